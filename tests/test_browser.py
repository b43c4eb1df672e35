"""A real browser behind the gateway: headless Chromium loads a page whose
caller is challenged, its Web Worker solves the puzzle, the clearance comes
back as a cookie, and the reload reaches the upstream page.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs
them); skipped without them, failed without them when CI is set.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from guardgate import GuardGate
from tests.servers import principal_of, serve_in_thread

PAGE = b"<!doctype html><title>upstream</title><h1 id='served'>the upstream page</h1>"


async def upstream(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/html; charset=utf-8")]})
    await send({"type": "http.response.body", "body": PAGE})


@pytest.fixture
def chromium() -> Iterator[Any]:
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver:
        message = "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless", "--no-sandbox", "--disable-gpu",
                     "--disable-background-networking"):
        options.add_argument(argument)
    browser = webdriver.Chrome(options=options,
                               service=webdriver.ChromeService(executable_path=driver))
    try:
        yield browser
    finally:
        browser.quit()


def test_a_browser_solves_the_challenge_and_reaches_the_page(chromium: Any) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    with serve_in_thread(upstream) as origin:
        policy = {
            "upstream": origin,
            "tiers": {"suspicious": {"score": 0.5, "challenge": {"difficulty": 12}}},
            "overrides": [{"ip": "127.0.0.1/32", "tier": "suspicious"}],
            "challenge": {"secret": "browser-test-secret-0123456789"},
        }
        with serve_in_thread(GuardGate(policy=policy)) as base:
            chromium.get(base + "/docs/page")
            WebDriverWait(chromium, 30).until(
                lambda browser: "the upstream page" in browser.page_source)
            cookies = {c["name"]: c for c in chromium.get_cookies()}
    clearance = cookies.get("__Host-guardgate")
    assert clearance is not None, cookies
    assert clearance["httpOnly"] and clearance["secure"] and clearance["sameSite"] == "Lax"
    assert clearance["value"].startswith("ggk1.")


def test_the_dashboard_after_logging_in_shows_the_chart_and_the_riskiest(chromium: Any) -> None:
    from pathlib import Path

    import httpx
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from guardgate.toy import create_toy_app

    token = "dashboard-operator-token-01"
    mining = {"model": "toy-1", "logprobs": True, "top_logprobs": 20, "max_tokens": 1,
              "temperature": 0}
    with serve_in_thread(create_toy_app()) as toy:
        policy = {
            "upstream": toy,
            "admin": {"token": token},
            "quotas": [{"name": "rpm", "limit": "1000/minute"}],
            "tiers": {"watch": {"score": 0.3, "quota_factor": 0.5},
                      "blocked": {"score": 0.45, "deny": True}},
        }
        with serve_in_thread(GuardGate(policy=policy)) as base:
            for i in range(30):  # simulated traffic: a miner and some people
                key = "sk-miner" if i % 2 else f"sk-person-{i % 5}"
                body = {**mining, "messages": [{"role": "user", "content": f"go on {i}"}]} \
                    if key == "sk-miner" else \
                    {"model": "toy-1", "messages": [{"role": "user", "content": f"hi {i}"}]}
                httpx.post(base + "/v1/chat/completions", json=body,
                           headers={"authorization": f"Bearer {key}"})
            chromium.set_window_size(1200, 1400)
            chromium.get(base + "/_guardgate/")
            chromium.find_element(By.ID, "token").send_keys(token)
            chromium.find_element(By.ID, "login").click()
            WebDriverWait(chromium, 10).until(
                lambda browser: browser.find_elements(By.ID, "chart"))
            rows = chromium.find_elements(By.CSS_SELECTOR, "#riskiest tr")
            bars = chromium.find_elements(By.CSS_SELECTOR, "#chart rect")
            totals = chromium.find_element(By.ID, "totals").text
            by_tier = chromium.find_element(By.ID, "tiers").text
            artifacts = Path(__file__).resolve().parent.parent / "artifacts"
            artifacts.mkdir(exist_ok=True)
            shot = artifacts / "dashboard.png"
            chromium.save_screenshot(str(shot))
    miner = principal_of("sk-miner")
    assert len(rows) >= 3 and miner in rows[1].text and "blocked" in rows[1].text
    assert bars and "block" in totals and "allow" in totals
    assert "blocked" in by_tier and "normal" in by_tier
    assert shot.stat().st_size > 10_000
