"""What reading an answer costs on the way back: the usage meter (and the
send wrapper around it) over a 40-event chat stream and a JSON answer, per
answer, in microseconds. No sockets, no upstream: this is the gateway's own
work per answer, the part that grows with the answer's length.

    python bench/answer_bench.py [--rounds 7] [--number 2000]

Cases: a stream the client asked usage for (read, passed unchanged), the
same stream with the usage the gateway asked for stripped, a JSON answer,
and the stream through the whole answer path (`answer_path`: headers,
meter, send), asked for usage by the client or by the gateway, and degraded
and watermarked as a high-risk tier's answers are. Each figure
is the best of ``--rounds`` runs of ``--number`` answers, in CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from guardgate.answer import answer_path
from guardgate.apis import ADAPTERS
from guardgate.apis.usage import UsageMeter
from guardgate.metrics import Metrics
from guardgate.perturb.send import Perturbation
from guardgate.perturb.transforms import Transforms
from guardgate.perturb.watermark import Key

WORDS = ["the", "plan", "is", "to", "keep", "the", "work", "small", "and", "ship", "it",
         "in", "steps", "that", "each", "stand"]
BASE = {"id": "chatcmpl-9xYzAbCdEf", "object": "chat.completion.chunk", "created": 1733480000,
        "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_0ba0d124f1"}


def chat_stream(events: int = 40) -> list[bytes]:
    """An OpenAI chat stream with usage asked for: a role chunk, word chunks,
    a finish chunk, the usage chunk and [DONE]; one event per chunk."""
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return b"data: " + orjson.dumps({**BASE, "choices": [choice], "usage": None}) + b"\n\n"

    out = [chunk({"role": "assistant", "content": "", "refusal": None})]
    out += [chunk({"content": " " + WORDS[i % len(WORDS)]}) for i in range(events - 4)]
    out.append(chunk({}, "stop"))
    usage = {"prompt_tokens": 24, "completion_tokens": events - 4, "total_tokens": 20 + events,
             "prompt_tokens_details": {"cached_tokens": 0},
             "completion_tokens_details": {"reasoning_tokens": 0}}
    out.append(b"data: " + orjson.dumps({**BASE, "choices": [], "usage": usage}) + b"\n\n")
    out.append(b"data: [DONE]\n\n")
    return out


def chat_json() -> list[bytes]:
    text = " ".join(WORDS[i % len(WORDS)] for i in range(36))
    body = {**BASE, "object": "chat.completion", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
         "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 24, "completion_tokens": 36, "total_tokens": 60}}
    return [orjson.dumps(body)]


def metered(chunks: list[bytes], streaming: bool, strip: bool) -> Callable[[], None]:
    def one() -> None:
        meter = UsageMeter("openai.chat", streaming, strip)
        for chunk in chunks:
            meter.feed(chunk)
        meter.finish()
    return one


def through_answer_path(chunks: list[bytes], client_asks_usage: bool,
                        perturbation: Perturbation | None = None) -> Callable[[], None]:
    """``chunks`` through `answer_path`: a chat stream (or JSON answer, one
    chunk); when the client did not ask a stream for usage, the gateway does,
    and strips it again."""
    streaming = len(chunks) > 1
    options = {"stream_options": {"include_usage": True}} if client_asks_usage else {}
    call = ADAPTERS["openai.chat"].parse(orjson.dumps(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": streaming,
         **(options if streaming else {})}))
    metrics = Metrics()
    headers = [(b"x-ratelimit-remaining-requests", b"99")]
    start = {"type": "http.response.start", "status": 200,
             "headers": [(b"content-type", b"text/event-stream")]}
    last = len(chunks) - 1
    bodies = [{"type": "http.response.body", "body": c, "more_body": i < last}
              for i, c in enumerate(chunks)]

    async def sink(message: Any) -> None:
        pass

    async def answer() -> None:
        _, send, _ = answer_path(call, b"", sink, headers=headers, meter_tokens=True,
                                 perturbation=perturbation, metrics=metrics)
        await send(dict(start))
        for body in bodies:
            await send(body)

    loop = asyncio.new_event_loop()

    def one() -> None:
        loop.run_until_complete(answer())
    return one


def best(fn: Callable[[], None], number: int, rounds: int) -> float:
    """Microseconds per call, the best round. CPU time, not wall time: on a
    busy machine the process's own time is what stays comparable."""
    fn()
    times = []
    for _ in range(rounds):
        began = time.process_time()
        for _ in range(number):
            fn()
        times.append((time.process_time() - began) / number)
    return min(times) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--number", type=int, default=2000)
    args = parser.parse_args()
    stream, answer = chat_stream(), chat_json()
    cases = {
        "chat stream, 40 events, read": metered(stream, True, False),
        "chat stream, 40 events, usage stripped": metered(stream, True, True),
        "chat JSON answer, read": metered(answer, False, False),
        "chat JSON answer through answer_path": through_answer_path(answer, False),
        "chat stream through answer_path": through_answer_path(stream, True),
        "chat stream through answer_path, stripped": through_answer_path(stream, False),
        "the same, degraded and marked": through_answer_path(stream, False, Perturbation(
            Transforms(drop_logprobs=True, drop_reasoning=True), Key(b"k" * 16), b"k" * 16)),
    }
    for name, fn in cases.items():
        print(f"{name:45} {best(fn, args.number, args.rounds):8.1f} us/answer")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
