"""What `guardgate detect` reads from answers files (`guardgate.perturb.texts`):
the answer text of each API's JSON answers, found by the same walkers that
mark it, and nothing else (no reasoning, no tool arguments)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from guardgate.perturb.texts import answer_texts

USER = [{"role": "user", "content": "How should I plan a small software project?"}]
ASKS: list[tuple[str, dict[str, Any]]] = [
    ("/v1/chat/completions", {"messages": USER, "n": 2, "reasoning_effort": "low"}),
    ("/v1/completions", {"prompt": "Write a short story about"}),
    ("/v1/responses", {"input": "Plan my week", "reasoning": {"effort": "low"}}),
    ("/v1/messages", {"messages": USER, "max_tokens": 40,
                      "thinking": {"type": "enabled", "budget_tokens": 1024}}),
]


@pytest.fixture(scope="module")
def http(toy: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=toy, timeout=10) as client:
        yield client


def test_each_apis_answer_text_and_only_it(http: httpx.Client) -> None:
    answers = [http.post(path, json={"model": "toy", **body}).json() for path, body in ASKS]
    chat, completion, response, message = answers
    expected = [
        *(c["message"]["content"] for c in chat["choices"]),
        completion["choices"][0]["text"],
        *(p["text"] for i in response["output"] if i["type"] == "message" for p in i["content"]),
        *(b["text"] for b in message["content"] if b["type"] == "text"),
    ]
    lines = b"\n".join(orjson.dumps(a) for a in answers)
    assert list(answer_texts(lines, jsonl=True)) == expected
    assert all(expected) and len(expected) == 5
    assert chat["choices"][0]["message"]["reasoning_content"]  # there, and not read


def test_plain_text_other_lines_and_garbage() -> None:
    raw = b'"a bare string"\n{"text": "given as text"}\n\nnot json\n[1, 2]\n{"choices": 3}\n'
    assert list(answer_texts(raw, jsonl=True)) == ["a bare string", "given as text"]
    assert list(answer_texts(b"just text\n", jsonl=False)) == ["just text\n"]
