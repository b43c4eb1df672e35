"""A caller in a treated tier gets treated answers, whatever the policy
leaves out and however large the answer; what the gateway asks the upstream
for on its own, it alone takes away again. Real servers over sockets."""

from __future__ import annotations

import gzip
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from structlog.testing import capture_logs

from guardgate import GuardGate
from guardgate.perturb.watermark import mark
from tests.servers import body_of, free_port, running, serve_in_thread

HIGH = "sk-hostile-caller"
USER = [{"role": "user", "content": "How should I plan a large software project?"}]


def override(tier: str) -> dict[str, Any]:
    return {"api_key_sha256": hashlib.sha256(HIGH.encode()).hexdigest(), "tier": tier}


def as_high(base: str, path: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(base + path, json=body, timeout=60,
                      headers={"authorization": f"Bearer {HIGH}", **headers})


# --- row 5: a decision always takes effect -------------------------------------------


def test_an_override_into_a_degrading_tier_is_treated_without_risk_or_token_quota(
    toy: str,
) -> None:
    """No risk scoring and no token quota: nothing else reads the call, yet the
    tier's degrade transforms still apply to the request and to the answer."""
    policy = {
        "upstream": toy,
        "tiers": {"high": {"score": 0.7, "degrade": [
            "force_n1", "drop_logprobs", {"clamp_max_tokens": 40}]}},
        "overrides": [override("high")],
        "risk": {"enabled": False},
    }
    body = {"model": "toy-1", "messages": USER, "n": 3, "max_tokens": 1500,
            "logprobs": True, "top_logprobs": 5}
    untreated = httpx.post(toy + "/v1/chat/completions", json=body).json()
    assert len(untreated["choices"]) == 3 and untreated["choices"][0]["logprobs"]
    with serve_in_thread(GuardGate(policy=policy)) as base, capture_logs() as logs:
        answer = as_high(base, "/v1/chat/completions", body)
    assert answer.status_code == 200
    got = answer.json()
    assert len(got["choices"]) == 1
    assert got["choices"][0]["logprobs"] is None
    assert got["usage"]["completion_tokens"] <= 40 < untreated["usage"]["completion_tokens"]
    assert [e["action"] for e in logs if e["event"] == "request"] == ["degrade"]


# --- row 4: answers of any size are treated, in bounded memory -------------------------

KEY = "watermark-key-for-hostile-answers"
SENTENCE = "A large goal becomes much easier to reach when it is broken into small steps."
CHOICES = 6
USAGE = {"prompt_tokens": 10, "completion_tokens": 1000, "total_tokens": 1010}
ENTRY = {"token": " steps", "logprob": -0.25, "bytes": [32, 115, 116, 101, 112, 115],
         "top_logprobs": [{"token": f" w{i}", "logprob": -1.5 - i, "bytes": [32, 119]}
                          for i in range(5)]}
# Each size with its choices: from 4 MiB on, choices of at most 3.4 MB.
SIZES = {"1KiB": (1 << 10, 1), "4MiB": (4 << 20, CHOICES), "20MiB": (20 << 20, CHOICES),
         "60MiB": (60 << 20, 3 * CHOICES)}


def chat_answer(size: int, *, choices: int = CHOICES, treated: bool = False,
                last: int = 0) -> bytes:
    """A chat answer of about ``size`` bytes: ``choices`` choices of one
    sentence each, with logprobs filling the rest (``n: 6``, ``logprobs``);
    ``treated``: as a degrade-and-mark tier is to get it; ``last``: one more
    choice, with that many bytes of logprobs."""
    per = len(orjson.dumps(ENTRY)) + 1
    count = max(1, (size - 400) // (choices * per))
    content = mark(SENTENCE, KEY.encode()) if treated else SENTENCE

    def choice(i: int, entries: int) -> dict[str, Any]:
        logprobs = None if treated else {"content": [ENTRY] * entries, "refusal": None}
        return {"index": i, "message": {"role": "assistant", "content": content,
                                        "refusal": None},
                "logprobs": logprobs, "finish_reason": "stop"}

    every = [choice(i, count) for i in range(choices)]
    if last:
        every.append(choice(choices, last // per))
    return orjson.dumps({
        "id": "chatcmpl-large", "object": "chat.completion", "created": 1733480000,
        "model": "large-1", "choices": every, "usage": USAGE,
    })


def chat_stream(*, huge_event: int = 0) -> list[bytes]:
    """A chat stream of the sentence, word by word; ``huge_event``: one more
    chunk of that many bytes of logprobs before the end."""
    base = {"id": "chatcmpl-large", "object": "chat.completion.chunk", "created": 1,
            "model": "large-1"}
    words = SENTENCE.split(" ")
    out = [{**base, "choices": [{"index": 0, "delta": {"content": (" " if i else "") + w},
                                 "logprobs": None, "finish_reason": None}]}
           for i, w in enumerate(words)]
    if huge_event:
        count = huge_event // (len(orjson.dumps(ENTRY)) + 1)
        out.append({**base, "choices": [{"index": 0, "delta": {"content": " Then"},
                                         "logprobs": {"content": [ENTRY] * count},
                                         "finish_reason": None}]})
    out.append({**base, "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                     "finish_reason": "stop"}]})
    return [b"data: " + orjson.dumps(c) + b"\n\n" for c in out] + [b"data: [DONE]\n\n"]


def large_upstream() -> Starlette:
    """A model endpoint whose answers are as large as the query asks (``?size=``),
    sent in 64 KiB chunks, logprobs or not; ``?choices=`` choices (and one
    more of ``?last=`` bytes), and a stream with one event of ``?event=`` bytes."""
    async def chat(request: Request) -> Response:
        body = await request.json()
        query = request.query_params
        if body.get("stream"):
            events = chat_stream(huge_event=int(query.get("event", "0")))
            return StreamingResponse(iter(events), media_type="text/event-stream")
        data = chat_answer(int(query.get("size", "1024")),
                           choices=int(query.get("choices", CHOICES)),
                           last=int(query.get("last", "0")))

        def chunks() -> Iterator[bytes]:
            for i in range(0, len(data), 65536):
                yield data[i:i + 65536]

        return StreamingResponse(chunks(), media_type="application/json")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def treated_policy(upstream: str, **extra: Any) -> dict[str, Any]:
    return {
        "upstream": upstream,
        "tiers": {"high": {"score": 0.7, "degrade": ["drop_logprobs"], "mark": True}},
        "overrides": [override("high")],
        "watermark": {"key": KEY},
        **extra,
    }


LARGE_CALL = {"model": "large-1", "messages": USER, "n": 6, "max_tokens": 4096,
              "logprobs": True, "top_logprobs": 5}


def peak_rss(pid: int) -> int:
    """The process's peak resident memory (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_a_degrade_and_mark_tier_treats_1kib_4mib_and_20mib_answers_alike(
    tmp_path: Path,
) -> None:
    """Logprobs dropped, text marked, usage metered, whatever the answer's
    size; the gateway (a process of its own) holds one part of an answer at
    most, so its peak memory does not grow with the answer."""
    port = free_port()
    with serve_in_thread(large_upstream()) as upstream:
        policy = treated_policy(upstream, quotas=[
            {"name": "tokens", "limit": "1000000000/day", "cost": "total_tokens"}])
        path = tmp_path / "policy.yaml"
        path.write_text(yaml.safe_dump(policy))
        with running("serve", "--policy", str(path), port=port) as proc:
            base = f"http://127.0.0.1:{port}"

            def remaining() -> int:
                time.sleep(0.2)  # the answer before settles once it is sent
                probe = as_high(base, "/v1/chat/completions?size=100&choices=1",
                                {**LARGE_CALL, "n": 1, "max_tokens": 10})
                assert probe.status_code == 200
                return int(probe.headers["x-ratelimit-remaining-tokens"])

            bodies, spent, peaks = {}, {}, {}
            before = remaining()
            for name, (size, choices) in SIZES.items():
                assert abs(len(chat_answer(size, choices=choices)) - size) < 1024
                answer = as_high(base, f"/v1/chat/completions?size={size}&choices={choices}",
                                 LARGE_CALL)
                assert answer.status_code == 200, answer.text
                bodies[name] = answer.content
                peaks[name] = peak_rss(proc.pid)
                after = remaining()
                spent[name], before = before - after, after
    # Logprobs dropped and text marked, the same way byte for byte, and the
    # same tokens charged: the upstream's usage, not an estimate from the size.
    assert mark(SENTENCE, KEY.encode()) != SENTENCE
    for name, (_, choices) in SIZES.items():
        assert bodies[name] == chat_answer(0, choices=choices, treated=True), name
    # (Each figure is the answer's and the probe's after it, each reporting USAGE.)
    assert set(spent.values()) == {2 * USAGE["total_tokens"]}, spent
    # A 4 MiB answer is held whole; a larger one, one choice at a time: three
    # times the answer, not a byte more at the peak.
    print("peak RSS", {k: f"{v / 2**20:.1f} MiB" for k, v in peaks.items()})
    assert peaks["60MiB"] - peaks["20MiB"] < 8 << 20, peaks


def test_a_part_too_large_to_treat_is_refused_never_passed_untreated() -> None:
    """One choice larger than the gateway holds: the treated caller gets an
    error in the API's shape (its SDK raises), before anything else or as
    the stream's last event; a JSON answer under way is cut. A caller in no
    tier gets the upstream's bytes."""
    huge = 6 << 20
    with serve_in_thread(large_upstream()) as upstream, \
            serve_in_thread(GuardGate(policy=treated_policy(upstream))) as base, \
            capture_logs() as logs:
        refused = as_high(base, f"/v1/chat/completions?size={huge}&choices=1", LARGE_CALL)
        sdk = openai.OpenAI(base_url=base + "/v1", api_key=HIGH, max_retries=0)
        with pytest.raises(openai.BadRequestError, match="too large"):
            sdk.chat.completions.create(**LARGE_CALL, extra_query={"size": huge, "choices": 1})
        with pytest.raises(openai.APIError, match="too large"):
            list(sdk.chat.completions.create(**LARGE_CALL, stream=True,
                                             extra_query={"event": huge}))
        streamed = as_high(base, f"/v1/chat/completions?event={huge}",
                           {**LARGE_CALL, "stream": True})
        with pytest.raises(httpx.RemoteProtocolError):
            as_high(base, f"/v1/chat/completions?size={8 << 20}&last={huge}", LARGE_CALL)
        normal = httpx.post(base + f"/v1/chat/completions?size={huge}&choices=1",
                            json=LARGE_CALL, timeout=60)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "answer_too_large"
    assert b"top_logprobs" not in refused.content
    # The stream: its words, marked, then the error event, and no logprobs.
    assert streamed.status_code == 200
    assert b"top_logprobs" not in streamed.content
    *words, last = streamed.content[:-2].split(b"\n\n")
    assert orjson.loads(last.removeprefix(b"data: "))["error"]["code"] == "answer_too_large"
    text = "".join(orjson.loads(w.removeprefix(b"data: "))["choices"][0]["delta"]["content"]
                   for w in words)
    assert text and mark(SENTENCE, KEY.encode()).startswith(text)  # (what was held stays)
    assert normal.content == chat_answer(huge, choices=1)
    errors = [e.get("error") for e in logs if e["event"] == "request"]
    assert errors.count("answer too large to treat: refused") == 5


def odd_upstream() -> Starlette:
    """A model endpoint whose answers come as ``?shape=`` says: ``gzip``
    (compressed, although nobody asked), ``text`` (no JSON), ``json`` (JSON
    to a stream request), ``html500`` (an error page)."""
    async def chat(request: Request) -> Response:
        shape = request.query_params["shape"]
        answer = chat_answer(1024)
        if shape == "gzip":
            return Response(gzip.compress(answer), media_type="application/json",
                            headers={"content-encoding": "gzip"})
        if shape == "text":
            return Response(b"choices: " + answer, media_type="text/plain")
        if shape == "json":
            return Response(answer, media_type="application/json")
        return Response(b"<html>upstream broke</html>", status_code=500,
                        media_type="text/html")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


@pytest.mark.parametrize("shape,stream", [("gzip", False), ("gzip", True), ("text", False),
                                          ("json", True)])
def test_an_answer_the_gateway_cannot_read_is_refused_never_passed_untreated(
        shape: str, stream: bool) -> None:
    """Compressed, not JSON, or not the stream asked for: a treated caller
    gets a 502 in the API's shape and none of the answer's logprobs; a caller
    in no tier gets the upstream's bytes."""
    call = {**LARGE_CALL, "stream": stream}
    path = f"/v1/chat/completions?shape={shape}"
    with serve_in_thread(odd_upstream()) as upstream, \
            serve_in_thread(GuardGate(policy=treated_policy(upstream))) as base:
        refused = as_high(base, path, call)
        normal = httpx.post(base + path, json=call, timeout=60)
        direct = httpx.post(upstream + path, json=call, timeout=60)
    assert refused.status_code == 502
    assert refused.json()["error"]["code"] == "upstream_answer_unreadable"
    assert b"logprobs" not in refused.content
    assert normal.status_code == 200 and normal.content == direct.content


def test_an_upstream_error_answer_passes_as_it_came_to_a_treated_caller() -> None:
    with serve_in_thread(odd_upstream()) as upstream, \
            serve_in_thread(GuardGate(policy=treated_policy(upstream))) as base:
        answer = as_high(base, "/v1/chat/completions?shape=html500", LARGE_CALL)
    assert answer.status_code == 500
    assert answer.content == b"<html>upstream broke</html>"


# --- row 12: the usage the gateway asked for is the only usage it removes ----------------


def litellm_upstream(asked_usage: list[bool]) -> Starlette:
    """Answers as a LiteLLM proxy writes them (``json.dumps``, spaces after
    separators): a stream asked for usage reports it on its last chunk that
    still carries a choice, not on a chunk of its own. Whether each stream
    was asked for usage goes to ``asked_usage``."""
    usage = {"completion_tokens": 9, "prompt_tokens": 12, "total_tokens": 21}
    base = {"id": "chatcmpl-litellm", "created": 1733480000, "model": "gpt-4o-mini",
            "object": "chat.completion.chunk", "system_fingerprint": None}

    async def chat(request: Request) -> Response:
        body = await request.json()
        if not body.get("stream"):
            return Response(json.dumps({
                **base, "object": "chat.completion", "usage": usage,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": SENTENCE}}],
            }), media_type="application/json")
        asked = bool((body.get("stream_options") or {}).get("include_usage"))
        asked_usage.append(asked)
        chunks = [{**base, "choices": [{"index": 0, "delta": {"content": word + " "}}]}
                  for word in SENTENCE.split(" ")]
        last: dict[str, Any] = {**base, "choices": [
            {"index": 0, "delta": {}, "finish_reason": "stop"}]}
        if asked:
            last["usage"] = usage
        events = [f"data: {json.dumps(c)}\n\n".encode() for c in [*chunks, last]]
        return StreamingResponse(iter([*events, b"data: [DONE]\n\n"]),
                                 media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def test_pass_through_is_byte_identical_with_token_metering_on() -> None:
    """A caller in no tier, under a token quota: JSON and streams come as the
    upstream wrote them, with usage when the caller asked for it and without
    when only the gateway did, even where usage shares a chunk with a choice."""
    call = {"model": "gpt-4o-mini", "messages": USER}
    include = {"stream_options": {"include_usage": True}}
    asked: list[bool] = []
    with serve_in_thread(litellm_upstream(asked)) as upstream:
        policy = {"upstream": upstream,
                  "quotas": [{"name": "tokens", "limit": "100000/minute",
                              "cost": "total_tokens"}]}
        with serve_in_thread(GuardGate(policy=policy)) as base:
            for body in (call, {**call, "stream": True}, {**call, "stream": True, **include}):
                direct = httpx.post(upstream + "/v1/chat/completions", json=body)
                served = httpx.post(base + "/v1/chat/completions", json=body,
                                    headers={"authorization": "Bearer sk-normal"})
                assert served.status_code == 200
                assert served.content == direct.content, body
                asked_usage = "stream" not in body or "stream_options" in body
                assert (b'"usage"' in served.content) == asked_usage
    # Directly, then through the gateway, which asks every stream for its usage.
    assert asked == [False, True, True, True]


# --- answers kept upstream: stored, background, batches -------------------------------


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/v1/responses/resp_123", None),
    ("GET", "/V1//responses/resp_123?stream=true", None),
    ("GET", "/v1/chat/completions", None),
    ("GET", "/v1/chat/completions/chatcmpl-123", None),
    ("POST", "/v1/responses", {"model": "toy-1", "input": "Hi", "background": True}),
    ("POST", "/v1/batches", {"input_file_id": "file-1", "endpoint": "/v1/chat/completions"}),
    ("POST", "/v1/messages/batches", {"requests": []}),
    ("GET", "/v1/messages/batches/msgbatch_1/results", None),
    # However prefixed: as LiteLLM and Azure OpenAI serve them.
    ("GET", "/responses/resp_123", None),
    ("GET", "/openai/deployments/d/chat/completions/chatcmpl-1", None),
    ("GET", "/openai/responses/resp_1?api-version=2025-04-01-preview", None),
    ("GET", "/v1/conversations/conv_1/items", None),
    ("GET", "/v1/files/file-1/content", None),
    ("POST", "/openai/batches?api-version=2025-04-01-preview", {"input_file_id": "f"}),
    # A background run, however its flag is spelled.
    ("POST", "/v1/responses", {"model": "toy-1", "input": "Hi", "background": "true"}),
    ("POST", "/v1/responses", {"model": "toy-1", "input": "Hi", "background": 1}),
    # A server's native endpoints, which answer what the gateway cannot read.
    ("POST", "/completion", {"prompt": "Hi", "n_probs": 5}),
    ("POST", "/api/generate", {"model": "m", "prompt": "Hi"}),
    ("POST", "/invocations", {"messages": [{"role": "user", "content": "Hi"}]}),
    # Answers made out of the request and read back later: eval runs, run steps.
    ("GET", "/v1/evals/e1/runs/r1/output_items", None),
    ("GET", "/v1/threads/t/runs/r/steps", None),
    ("GET", "/v1/videos/v1/content", None),
    ("POST", "/v1/evals/e1/runs", {"data_source": {"type": "completions"}}),
    ("POST", "/v1/responses/resp_1/cancel", {}),
])
def test_answers_kept_upstream_are_refused_to_a_treated_caller(
        toy: str, method: str, path: str, body: dict[str, Any] | None) -> None:
    """Read back by id, fetched after a background run or out of a batch, or
    from an endpoint that is no model route, an answer never passes through
    the treatment: a treated caller does not get it; anyone else gets what
    the upstream says."""
    with serve_in_thread(GuardGate(policy=treated_policy(toy))) as base:
        treated = httpx.request(method, base + path, json=body, timeout=30,
                                headers={"authorization": f"Bearer {HIGH}"})
        other = httpx.request(method, base + path, json=body, timeout=30,
                              headers={"authorization": "Bearer sk-someone-else"})
    assert treated.status_code == 403
    assert treated.json()["error"]["code"] == "access_denied"
    assert other.status_code != 403


def test_a_treated_call_never_asks_for_what_no_walker_treats(toy: str) -> None:
    """vLLM's token ids decode to the untreated answer; its prompt logprobs
    are logprobs no transform caps."""
    seen: list[dict[str, Any]] = []

    async def upstream(scope: Any, receive: Any, send: Any) -> None:
        seen.append(orjson.loads(await body_of(receive)))
        answer = b'{"choices":[{"index":0,"message":{"role":"assistant","content":"ok"}}]}'
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": answer})

    extras = {"return_token_ids": True, "return_tokens_as_token_ids": True,
              "prompt_logprobs": 5}
    with serve_in_thread(upstream) as base_up, \
            serve_in_thread(GuardGate(policy=treated_policy(base_up))) as base:
        as_high(base, "/v1/chat/completions", {"model": "m", "messages": USER, **extras})
        httpx.post(base + "/v1/chat/completions", json={"model": "m", "messages": USER, **extras})
    treated, normal = seen
    assert not set(extras) & set(treated)
    assert set(extras) <= set(normal)  # others' requests go as they came


def test_a_treated_caller_still_lists_the_models(toy: str) -> None:
    with serve_in_thread(GuardGate(policy=treated_policy(toy))) as base:
        models = httpx.get(base + "/v1/models", headers={"authorization": f"Bearer {HIGH}"})
    assert models.status_code == 200
