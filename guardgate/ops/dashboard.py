"""The operator dashboard at ``/_guardgate/``: one server-rendered page, no
external assets, refreshing itself. Behind the policy's admin token: a login
form sets it as a cookie scoped to ``/_guardgate``.

It shows the last hour of this process's decisions by action, minute by
minute (a stacked bar chart, inline SVG), the riskiest callers with their
top signals and the clusters they share, the threat intelligence feeds and
the imported indicators that matched callers, and the active policy.
"""

from __future__ import annotations

import hmac
import html
import time
from collections import Counter
from urllib.parse import parse_qs

from guardgate.challenge.gate import cookie
from guardgate.intel.service import IntelService
from guardgate.ops.admin import ranked
from guardgate.policy.model import Policy
from guardgate.risk.engine import RiskEngine
from guardgate.store import redacted

COOKIE = "guardgate-admin"
ACTIONS = ("allow", "throttle", "challenge", "degrade", "mark", "block")
COLORS = {"allow": "#6a9955", "throttle": "#d7ba7d", "challenge": "#4e94ce",
          "degrade": "#c586c0", "mark": "#9cdcfe", "block": "#f14c4c"}
MINUTES = 60


class Activity:
    """Decisions of this process per minute and action, for the last hour."""

    def __init__(self) -> None:
        self._minutes: dict[int, Counter[tuple[str, str]]] = {}  # (tier, action) counts

    def count(self, action: str, tier: str = "normal") -> None:
        minute = int(time.time() // 60)
        counts = self._minutes.get(minute)
        if counts is None:
            counts = self._minutes[minute] = Counter()
            for old in [m for m in self._minutes if m <= minute - MINUTES]:
                del self._minutes[old]
        counts[tier, action.removeprefix("would_")] += 1

    def by_tier(self) -> Counter[tuple[str, str]]:
        """(tier, action) -> decisions in the last hour."""
        total: Counter[tuple[str, str]] = Counter()
        for counts in list(self._minutes.values()):
            total.update(counts)
        return total

    def series(self) -> list[tuple[int, Counter[str]]]:
        """Each minute of the last hour, with its decisions by action."""
        now = int(time.time() // 60)
        out = []
        for minute in range(now - MINUTES + 1, now + 1):
            actions: Counter[str] = Counter()
            for (_, action), n in self._minutes.get(minute, Counter()).items():
                actions[action] += n
            out.append((minute, actions))
        return out


def authorized(token: str | None, headers: dict[bytes, bytes]) -> bool:
    if token is None:
        return False
    given = cookie(headers.get(b"cookie"), (COOKIE,)) or b""
    return hmac.compare_digest(given, _session(token).encode())


def _session(token: str) -> str:
    """What the login cookie holds: derived from the operator token, so the
    token itself is never stored in a browser."""
    return hmac.new(token.encode(), b"guardgate dashboard session", "sha256").hexdigest()


def login_token(body: bytes) -> str:
    values = parse_qs(body.decode("utf-8", "replace"))
    return (values.get("token") or [""])[0]


def login_page(failed: bool = False) -> bytes:
    note = '<p class="error">That token is not right.</p>' if failed else ""
    return _page("guardgate: sign in", f"""
<h1>guardgate</h1>{note}
<form method="post" action="/_guardgate/login">
  <label>Operator token <input id="token" name="token" type="password" autofocus></label>
  <button id="login" type="submit">Sign in</button>
</form>""", refresh=False)


def _chart(activity: Activity) -> str:
    series = activity.series()
    width, height, bar = 720, 180, 12
    peak = max([sum(c.values()) for _, c in series] + [1])
    opening = (f'<svg id="chart" width="{width}" height="{height + 20}" role="img" '
               f'aria-label="decisions per minute">')
    parts = [opening]
    for i, (_, counts) in enumerate(series):
        y = float(height)
        for action in ACTIONS:
            n = counts.get(action, 0)
            if not n:
                continue
            h = n / peak * height
            y -= h
            parts.append(f'<rect x="{i * bar}" y="{y:.1f}" width="{bar - 2}" height="{h:.1f}" '
                         f'fill="{COLORS[action]}"><title>{action}: {n}</title></rect>')
    parts.append(f'<text x="0" y="{height + 15}">60 minutes ago</text>'
                 f'<text x="{width - 40}" y="{height + 15}">now</text></svg>')
    legend = " ".join(f'<span class="key" style="background:{COLORS[a]}"></span>{a}'
                      for a in ACTIONS)
    totals = Counter[str]()
    for _, counts in series:
        totals.update(counts)
    summary = ", ".join(f"{a} {totals[a]}" for a in ACTIONS if totals[a]) or "no decisions yet"
    return f'{"".join(parts)}<p class="legend">{legend}</p><p id="totals">Last hour: {summary}</p>'


def _tier_table(activity: Activity) -> str:
    counts = activity.by_tier()
    tiers = sorted({tier for tier, _ in counts})
    if not tiers:
        return ""
    head = "".join(f"<th>{a}</th>" for a in ACTIONS)
    rows = "".join(
        f"<tr><td>{html.escape(tier)}</td>"
        + "".join(f"<td>{counts[tier, a] or ''}</td>" for a in ACTIONS) + "</tr>"
        for tier in tiers)
    return f'<table id="tiers"><tr><th>tier</th>{head}</tr>{rows}</table>'


def _intel(intel: IntelService | None) -> str:
    """The feeds, and which imported indicators matched which callers."""
    if intel is None:
        return ""
    status = intel.status()
    feeds = "".join(
        f"<tr><td>{html.escape(f['name'])}</td><td>{html.escape(f['outcome'])}</td>"
        f"<td>{f['in_force']}</td><td>{html.escape(f['error'] or '')}</td></tr>"
        for f in status["feeds"])
    matched = "".join(
        f"<tr><td>{html.escape(m['kind'])} <code>{html.escape(m['value'][:40])}</code></td>"
        f"<td>{html.escape(m['feed'])}</td><td>{html.escape(m['campaign'] or '')}</td>"
        f"<td>{m['matches']}</td><td>"
        + ", ".join(f"<code>{html.escape(c)}</code>" for c in m["callers"][:5]) + "</td></tr>"
        for m in status["matched"][:15])
    return f"""
<h2>Shared intelligence</h2>
<p id="intel">{status['indicators']} imported indicators in force.</p>
<table id="feeds"><tr><th>feed</th><th>last poll</th><th>in force</th><th>error</th></tr>
{feeds or '<tr><td colspan="4">no feeds</td></tr>'}</table>
<table id="matched"><tr><th>indicator</th><th>feed</th><th>campaign</th><th>matches</th>
<th>callers</th></tr>{matched or '<tr><td colspan="5">no match yet</td></tr>'}</table>"""


async def dashboard(policy: Policy, activity: Activity, risk: RiskEngine | None,
                    intel: IntelService | None = None) -> bytes:
    rows, clusters = [], Counter[tuple[str, str]]()
    if risk is not None:
        for principal, score, account in await ranked(risk, 20):
            last = account or {}
            top = ", ".join(s["name"] for s in last.get("signals", [])[:3]
                            if s["contribution"] > 0)
            for c in last.get("clusters", []):
                if c["risky_accounts"]:
                    clusters[c["kind"], c["key"]] = max(clusters[c["kind"], c["key"]],
                                                        c["risky_accounts"])
            rows.append(f"<tr><td><code>{html.escape(principal)}</code></td>"
                        f"<td>{score:.3f}</td><td>{html.escape(last.get('tier') or 'normal')}"
                        f"</td><td>{html.escape(top)}</td></tr>")
    table = ("<table id=\"riskiest\"><tr><th>principal</th><th>score</th><th>tier</th>"
             "<th>top signals</th></tr>" + "".join(rows) + "</table>") if rows else \
        "<p>No caller scored yet.</p>"
    shared = "".join(f"<li>{html.escape(kind)} <code>{html.escape(key)}</code>: "
                     f"{n} risky accounts</li>" for (kind, key), n in clusters.most_common(10))
    tiers = "".join(
        f"<li><b>{html.escape(t.name)}</b> from {t.score:g}: "
        + ", ".join(x for x in (
            f"quotas x{t.quota_factor:g}" if t.quota_factor < 1 else "",
            f"challenge {t.challenge.difficulty:g}" if t.challenge else "",
            "degrade " + ", ".join(t.degrade.names()) if t.degrade else "",
            "mark" if t.mark else "", "deny" if t.deny else "") if x)
        + "</li>" for t in policy.tiers)
    body = f"""
<h1>guardgate</h1>
<h2>Decisions, last hour (this process)</h2>
{_chart(activity)}
{_tier_table(activity)}
<h2>Riskiest callers</h2>
{table}
<h2>Shared clusters</h2>
<ul id="clusters">{shared or "<li>none</li>"}</ul>
{_intel(intel)}
<h2>Active policy</h2>
<p id="policy">version <code>{policy.digest[:12]}</code>, mode {policy.mode},
storage <code>{html.escape(redacted(policy.storage))}</code>, {len(policy.quotas)} quotas</p>
<ul>{tiers or "<li>no tiers</li>"}</ul>"""
    return _page("guardgate", body, refresh=True)


def _page(title: str, body: str, *, refresh: bool) -> bytes:
    meta = '<meta http-equiv="refresh" content="10">' if refresh else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">{meta}
<title>{html.escape(title)}</title>
<style>
body {{ font: 14px/1.5 system-ui, sans-serif; margin: 2rem; color: #222; max-width: 60rem; }}
table {{ border-collapse: collapse; }} td, th {{ padding: .2rem .8rem; border-bottom: 1px solid #ddd;
text-align: left; }} .key {{ display: inline-block; width: .8rem; height: .8rem; margin: 0 .3rem 0 .8rem; }}
.error {{ color: #a00; }} svg text {{ font-size: 11px; fill: #666; }}
</style></head><body>{body}</body></html>""".encode()


def admin_cookie(token: str, secure: bool) -> bytes:
    value = (f"{COOKIE}={_session(token)}; Path=/_guardgate; HttpOnly; SameSite=Strict; "
             "Max-Age=43200")
    return (value + ("; Secure" if secure else "")).encode()

