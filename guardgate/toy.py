"""A toy model server: the upstream behind ``guardgate demo``, the tests and the benchmarks.

No model, no network, no assets. An answer is a run of sentences from a built-in
bank, picked by a hash of (server seed, request seed, prompt, choice index), so
the same request always gets the same bytes (``created`` is a fixed timestamp
and ids are hashes of the request body). The wire shapes are the real APIs', so
the official SDKs parse them:

    POST /v1/chat/completions   OpenAI chat, JSON or ``data:`` SSE chunks
    POST /v1/completions        OpenAI legacy completions
    POST /v1/responses          OpenAI Responses API, typed SSE events
    POST /v1/messages           Anthropic Messages API
    GET  /v1/models             the toy model (Anthropic's shape if ``anthropic-version`` is sent)
    GET  /                      health

A token is a word with its leading space; the first token of an answer has
none, except in completions, which continue the prompt. With a max-tokens field
the answer has exactly that many tokens (capped at 4096) and ends "length"
(``max_tokens`` for Anthropic, status ``incomplete`` for Responses); without
one it is whole sentences within 64 tokens and ends "stop" / ``end_turn`` /
``completed``. Reasoning and thinking tokens come on top of that budget, and are
counted in the output tokens with ``reasoning_tokens`` in the usage details.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

__all__ = [
    "CREATED",
    "DEFAULT_MAX_TOKENS",
    "MAX_TOKENS_CAP",
    "TOY_MODEL",
    "ToyAnswer",
    "create_toy_app",
    "toy_answer",
    "toy_thinking",
]

Json = dict[str, Any]

TOY_MODEL = "guardgate-toy"
DEFAULT_MAX_TOKENS = 64
MAX_TOKENS_CAP = 4096
CREATED = 1735689600  # 2025-01-01T00:00:00Z, fixed so that answers are byte-for-byte repeatable
_FINGERPRINT = "fp_toy0001"
_TOP_MAX = 20
_LOGPROBS_INCLUDE = "message.output_text.logprobs"
_SSE_HEADERS = {"content-type": "text/event-stream", "cache-control": "no-cache"}
_EFFORT_SENTENCES = {"minimal": 1, "low": 1, "medium": 2, "high": 3, "xhigh": 4, "max": 4}

# --------------------------------------------------------------------------- the bank

# (words in a prompt that pick the topic, its sentences); everyday vocabulary throughout.
TOPICS: tuple[tuple[frozenset[str], tuple[str, ...]], ...] = (
    (frozenset({"code", "program", "programming", "python", "function", "bug", "software", "api",
                "debug", "test", "tests", "compile", "javascript", "sql", "database", "error"}), (
        "A good function does one thing, and its name should tell the reader what that thing is.",
        "When a bug is hard to find, reduce the problem to the smallest example that still fails.",
        "Tests are most useful when they describe the behavior you care about, not the details.",
        "Code is read far more often than it is written, so it pays to make it easy to read.",
        "Before you try to make a program faster, measure where it actually spends its time.",
        "Version control lets you try a new idea without the fear of losing the work that runs.",
        "A clear error message tells the user what went wrong and what they can do next.",
        "It is usually better to start with a simple design and change it when the need is real.",
    )),
    (frozenset({"science", "physics", "chemistry", "biology", "energy", "experiment", "atom",
                "cell", "cells", "light", "gravity", "climate", "space", "planet", "sun", "why"}), (
        "Light from the sun takes about eight minutes to reach us, so we see it as it was before.",
        "A good experiment changes one thing at a time, so the result can be traced to a cause.",
        "Living cells use energy from food to build the large molecules they need to grow.",
        "Gravity is weak between small objects, but it becomes very strong for whole planets.",
        "Water expands when it freezes, which is why ice floats and pipes can break in winter.",
        "Scientists trust a result more when other groups can repeat the work and agree.",
        "The climate of a place depends on its distance from the sea, its height, and its winds.",
        "Most of an atom is empty space, with a small heavy center and a cloud of light electrons.",
    )),
    (frozenset({"write", "writing", "essay", "story", "email", "letter", "paragraph", "sentence",
                "grammar", "word", "words", "edit", "poem", "article", "blog", "draft"}), (
        "Strong writing starts with a clear idea of who the reader is and what they need to know.",
        "Short sentences are easy to follow, but a mix of lengths gives the text a natural rhythm.",
        "The first draft is for getting the ideas down, and the second is for making them clear.",
        "A good opening paragraph tells the reader why the rest of the piece is worth their time.",
        "Concrete examples make an abstract point much easier to understand and remember.",
        "When you edit, read the text out loud, because the ear catches what the eye misses.",
        "Every paragraph should have one main point, and its first sentence should make it plain.",
        "Cutting words that add no meaning is one of the fastest ways to improve almost any text.",
    )),
    (frozenset({"plan", "planning", "project", "goal", "goals", "time", "schedule", "team",
                "budget", "week", "task", "tasks", "deadline", "meeting", "priority"}), (
        "A large goal becomes much easier to reach when it is broken into small steps.",
        "Decide what success looks like before the work begins, so the team knows when it is done.",
        "Most plans change along the way, so leave some extra time for what you cannot predict.",
        "A short weekly review shows what worked, what did not, and what should come next.",
        "When everything seems important, ask which task would make the biggest difference today.",
        "Writing the plan down makes it easier to share, to question, and to improve over time.",
        "Good teams agree early on who owns each task, so that no work is done twice.",
        "A realistic budget includes the cost of mistakes, because few projects go as expected.",
    )),
)
GENERAL: tuple[str, ...] = (
    "In short, the best approach depends on your goals, your limits, and the time you have.",
    "It often helps to look at the problem from the point of view of the person who will use it.",
    "A simple example can show the main idea more clearly than a long explanation.",
    "There is rarely a single right answer, but some answers are much better supported.",
    "If you are not sure where to begin, start with the part you understand best.",
    "Small and steady progress usually beats a large effort that is made only once.",
    "It is worth checking each step against the original question to stay on track.",
    "With a little practice, the process becomes natural and much faster than it first seems.",
)
THINKING: tuple[str, ...] = (
    "The user is asking a fairly general question, so a clear and direct answer should work best.",
    "I should start with the main idea and then add one or two supporting points.",
    "It would help to include a simple example so the explanation is easy to follow.",
    "I need to keep the answer short and leave out details that do not matter here.",
    "Let me check that the answer actually addresses what was asked before I write it.",
    "A friendly and neutral tone seems right for this request.",
)
# Other candidates for top_logprobs, next to the chosen token.
ALTERNATIVES: tuple[str, ...] = (
    " the", " a", " and", " to", " of", " in", " it", " is", " that", " for", " with", " this",
    " on", " as", " be", " can", " more", " when", " your", " which", " most", " one", " by", " an",
)

# --------------------------------------------------------------------------- generation


@dataclass(frozen=True, slots=True)
class ToyAnswer:
    """One generated answer: its tokens, why it ended, and the key its logprobs derive from."""

    tokens: tuple[str, ...]
    finish_reason: str  # "stop" or "length"
    key: str

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    def logprobs(self) -> list[tuple[float, list[tuple[str, float]]]]:
        """Per token: its logprob and the 20 best candidates, itself first, most likely first.

        Drawn from their own random stream, so asking for logprobs never changes the text.
        """
        rng = _rng("logprobs", self.key)
        out: list[tuple[float, list[tuple[str, float]]]] = []
        for token in self.tokens:
            chosen = -round(min(rng.expovariate(2.5), 9.0), 6)
            others = [a for a in rng.sample(ALTERNATIVES, len(ALTERNATIVES)) if a != token]
            top, current = [(token, chosen)], chosen
            for other in others[: _TOP_MAX - 1]:
                current -= rng.uniform(0.2, 2.0)
                top.append((other, round(current, 6)))
            out.append((chosen, top))
        return out


def _rng(*parts: object) -> random.Random:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


def _tokens(words: list[str], lead_space: bool) -> tuple[str, ...]:
    return tuple((" " if i or lead_space else "") + w for i, w in enumerate(words))


def _sentences(rng: random.Random, topic: tuple[str, ...]) -> Iterator[str]:
    while True:  # rounds of the topic's sentences, shuffled, with a general one after every two
        own, general = list(topic), list(GENERAL)
        rng.shuffle(own)
        rng.shuffle(general)
        for i, sentence in enumerate(own):
            yield sentence
            if i % 2:
                yield general[i // 2]


def toy_answer(prompt: str, *, seed: int | str = 0, index: int = 0,
               max_tokens: int | None = None, lead_space: bool = False) -> ToyAnswer:
    """The toy model's answer to ``prompt``, deterministic in all its arguments."""
    key = f"{seed}\x1f{index}\x1f{prompt}"
    rng = _rng("answer", key)
    words = set(re.findall(r"[a-z]+", prompt.lower()))
    score, best = max((len(words & keys), i) for i, (keys, _) in enumerate(TOPICS))
    topic = TOPICS[best][1] if score else rng.choice(TOPICS)[1]
    limit = DEFAULT_MAX_TOKENS if max_tokens is None else max(1, min(max_tokens, MAX_TOKENS_CAP))
    out: list[str] = []
    for sentence in _sentences(rng, topic):
        split = sentence.split()
        if max_tokens is None and out and len(out) + len(split) > limit:
            break
        out.extend(split)
        if len(out) >= limit:
            break
    finish = "stop" if max_tokens is None else "length"
    return ToyAnswer(_tokens(out[:limit], lead_space), finish, key)


def toy_thinking(prompt: str, *, seed: int | str = 0, index: int = 0,
                 effort: str = "medium") -> tuple[str, ...]:
    """A short deterministic "thinking" text, as tokens; longer for higher efforts."""
    rng = _rng("thinking", seed, index, prompt)
    picked = rng.sample(THINKING, _EFFORT_SENTENCES.get(effort, 2))
    return _tokens(" ".join(picked).split(), False)


# --------------------------------------------------------------------------- requests


class _BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


async def _read(request: Request) -> tuple[Json, bytes]:
    raw = await request.body()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _BadRequest("We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise _BadRequest("The request body must be a JSON object.")
    return body, raw


def _texts(value: object, out: list[str], depth: int = 0) -> None:
    """Append every piece of text in a content value (a string, parts, blocks, input items)."""
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, list) and depth < 16:
        for item in value:
            _texts(item, out, depth + 1)
    elif isinstance(value, dict) and depth < 16:
        for key in ("text", "content", "output"):
            _texts(value.get(key), out, depth + 1)


def _int(body: Json, name: str, low: int, high: int, *, clamp: bool = False) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (
            value > high and not clamp):
        raise _BadRequest(f"Invalid '{name}': expected an integer from {low} to {high}.", name)
    return min(value, high)


def _max_tokens(body: Json, *names: str) -> int | None:
    for name in names:
        value = _int(body, name, 1, MAX_TOKENS_CAP, clamp=True)
        if value is not None:
            return value
    return None


def _messages(body: Json) -> list[Json]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) for m in messages):
        raise _BadRequest("'messages' must be a non-empty array of message objects.", "messages")
    return messages


def _prompts(value: object) -> tuple[list[str], int]:
    """The prompts to answer (token ids spelled out as text), and their input
    tokens: about four characters a token, one a token id, one per prompt."""
    if value is None:
        value = ""
    if isinstance(value, str):
        return [value], len(value) // 4 + 1
    if isinstance(value, list) and value:
        if all(isinstance(v, str) for v in value):
            return [str(v) for v in value], len("\n".join(value)) // 4 + len(value)
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return [" ".join(map(str, value))], len(value) + 1
        if all(isinstance(v, list) and all(isinstance(t, int) for t in v) for v in value):
            return [" ".join(map(str, v)) for v in value], sum(map(len, value)) + len(value)
    raise _BadRequest("'prompt' must be a string, or an array of strings or token ids.", "prompt")


@dataclass(slots=True)
class _Job:
    """One request, parsed, with its answers (``n`` per prompt) and their thoughts."""

    body: Json
    rid: str
    model: str
    prompts: list[str]
    n: int
    prompt_tokens: int
    answers: list[ToyAnswer]
    thoughts: list[tuple[str, ...]]
    top: int | None  # None: no logprobs; else how many top candidates per token

    @property
    def stream(self) -> bool:
        return self.body.get("stream") is True

    @property
    def include_usage(self) -> bool:
        options = self.body.get("stream_options")
        return isinstance(options, dict) and options.get("include_usage") is True

    @property
    def reasoning_tokens(self) -> int:
        return sum(map(len, self.thoughts))

    @property
    def completion_tokens(self) -> int:
        return sum(len(a.tokens) for a in self.answers) + self.reasoning_tokens


def _lp(token: str, logprob: float, top: list[tuple[str, float]], k: int, raw: bool = True) -> Json:
    """A logprob entry, OpenAI's chat/Responses shape; ``raw=False`` drops ``bytes``."""
    entries = [{"token": t, "logprob": lp, **({"bytes": list(t.encode())} if raw else {})}
               for t, lp in top[:k]]
    head: Json = {"token": token, "logprob": logprob}
    return {**head, **({"bytes": list(token.encode())} if raw else {}), "top_logprobs": entries}


def _lps(answer: ToyAnswer, k: int, raw: bool = True) -> list[Json]:
    return [_lp(t, lp, top, k, raw) for t, (lp, top) in zip(answer.tokens, answer.logprobs())]


def _sse(data: Json, event: str | None = None) -> bytes:
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


def _json(data: Json, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


# --------------------------------------------------------------------------- server


class _Toy:
    def __init__(self, token_delay: float, seed: int) -> None:
        self.delay = max(0.0, token_delay)
        self.seed = seed

    def _job(self, raw: bytes, body: Json, prefix: str, prompts: list[str], turns: int,
             max_tokens: int | None, *, n: int = 1, effort: str | None = None,
             top: int | None = None, lead_space: bool = False,
             prompt_tokens: int | None = None) -> _Job:
        model, extra = body.get("model"), body.get("seed")
        seed = f"{self.seed}/{extra}" if isinstance(extra, int) else str(self.seed)
        answers = [toy_answer(p, seed=seed, index=i, max_tokens=max_tokens, lead_space=lead_space)
                   for p in prompts for i in range(n)]
        thoughts = [toy_thinking(p, seed=seed, index=i, effort=effort) if effort else ()
                    for p in prompts for i in range(n)]
        digest = hashlib.sha256(f"{self.seed}\x1f".encode() + raw).hexdigest()
        if prompt_tokens is None:
            prompt_tokens = max(1, len("\n".join(prompts)) // 4 + turns)
        return _Job(body=body, rid=prefix + digest[:24],
                    model=model if isinstance(model, str) and model else TOY_MODEL,
                    prompts=prompts, n=n, prompt_tokens=prompt_tokens,
                    answers=answers, thoughts=thoughts, top=top)

    async def _reply(self, job: _Job, render: Callable[[_Job], Json],
                     stream: Callable[[_Job], AsyncIterator[bytes]]) -> Response:
        if job.stream:
            return StreamingResponse(stream(job), headers=_SSE_HEADERS)
        if self.delay:
            await asyncio.sleep(min(self.delay * job.completion_tokens, 2.0))
        return _json(render(job))

    async def _tick(self) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)

    async def chat(self, request: Request) -> Response:
        body, raw = await _read(request)
        messages = _messages(body)
        texts: list[str] = []
        for message in messages:
            _texts(message.get("content"), texts)
        effort = body.get("reasoning_effort")
        wants = body.get("logprobs") is True
        top = (_int(body, "top_logprobs", 0, _TOP_MAX) or 0) if wants else None
        job = self._job(raw, body, "chatcmpl-", ["\n".join(texts)], len(messages),
                        _max_tokens(body, "max_completion_tokens", "max_tokens"),
                        n=_int(body, "n", 1, 128) or 1, top=top,
                        effort=effort if isinstance(effort, str) and effort != "none" else None)
        return await self._reply(job, _chat_json, self._chat_stream)

    async def _chat_stream(self, job: _Job) -> AsyncIterator[bytes]:
        base: Json = {"id": job.rid, "object": "chat.completion.chunk", "created": CREATED,
                      "model": job.model, "service_tier": "default",
                      "system_fingerprint": _FINGERPRINT}
        tail: Json = {"usage": None} if job.include_usage else {}

        def chunk(i: int, delta: Json, logprobs: Json | None = None,
                  end: str | None = None) -> bytes:
            choice = {"index": i, "delta": delta, "logprobs": logprobs, "finish_reason": end}
            return _sse({**base, "choices": [choice], **tail})

        for i in range(len(job.answers)):
            yield chunk(i, {"role": "assistant", "content": "", "refusal": None})
        for pos in range(max(map(len, job.thoughts))):
            for i, thought in enumerate(job.thoughts):
                if pos < len(thought):
                    await self._tick()
                    yield chunk(i, {"reasoning_content": thought[pos]})
        tables = [_lps(a, job.top) if job.top is not None else None for a in job.answers]
        for pos in range(max(len(a.tokens) for a in job.answers)):
            for i, (answer, table) in enumerate(zip(job.answers, tables, strict=True)):
                if pos < len(answer.tokens):
                    lp = {"content": [table[pos]], "refusal": None} if table is not None else None
                    await self._tick()
                    yield chunk(i, {"content": answer.tokens[pos]}, lp)
        for i, answer in enumerate(job.answers):
            yield chunk(i, {}, None, answer.finish_reason)
        if job.include_usage:
            yield _sse({**base, "choices": [], "usage": _usage(job)})
        yield b"data: [DONE]\n\n"

    async def completions(self, request: Request) -> Response:
        body, raw = await _read(request)
        prompts, tokens = _prompts(body.get("prompt"))
        job = self._job(raw, body, "cmpl-", prompts, len(prompts), _max_tokens(body, "max_tokens"),
                        n=_int(body, "n", 1, 128) or 1, top=_int(body, "logprobs", 0, _TOP_MAX),
                        lead_space=True, prompt_tokens=tokens)
        return await self._reply(job, _completion_json, self._completion_stream)

    async def _completion_stream(self, job: _Job) -> AsyncIterator[bytes]:
        base: Json = {"id": job.rid, "object": "text_completion", "created": CREATED,
                      "model": job.model, "system_fingerprint": _FINGERPRINT}
        tail: Json = {"usage": None} if job.include_usage else {}

        def chunk(i: int, text: str, logprobs: Json | None = None, end: str | None = None) -> bytes:
            choice = {"text": text, "index": i, "logprobs": logprobs, "finish_reason": end}
            return _sse({**base, "choices": [choice], **tail})

        tables = [_completion_logprobs(job, i) for i in range(len(job.answers))]
        for pos in range(max(len(a.tokens) for a in job.answers)):
            for i, (answer, table) in enumerate(zip(job.answers, tables, strict=True)):
                if pos < len(answer.tokens):
                    lp = {k: v[pos:pos + 1] for k, v in table.items()} if table else None
                    await self._tick()
                    yield chunk(i, answer.tokens[pos], lp)
        for i, answer in enumerate(job.answers):
            yield chunk(i, "", None, answer.finish_reason)
        if job.include_usage:
            yield _sse({**base, "choices": [], "usage": _usage(job)})
        yield b"data: [DONE]\n\n"

    async def responses(self, request: Request) -> Response:
        body, raw = await _read(request)
        instructions, items = body.get("instructions"), body.get("input")
        if items is not None and not isinstance(items, str | list):
            raise _BadRequest("'input' must be a string or an array of input items.", "input")
        texts: list[str] = []
        _texts(instructions, texts)
        _texts(items, texts)
        turns = (len(items) if isinstance(items, list) else 1) + isinstance(instructions, str)
        effort = _effort(body)
        include = body.get("include")
        want = isinstance(include, list) and _LOGPROBS_INCLUDE in include
        job = self._job(raw, body, "resp_", ["\n".join(texts)], turns,
                        _max_tokens(body, "max_output_tokens"),
                        top=(_int(body, "top_logprobs", 0, _TOP_MAX) or 0) if want else None,
                        effort=(effort or "medium") if isinstance(body.get("reasoning"), dict)
                        and effort != "none" else None)
        return await self._reply(job, _response_json, self._response_stream)

    async def _response_stream(self, job: _Job) -> AsyncIterator[bytes]:
        seq = iter(range(1 << 62))

        def event(kind: str, **fields: Any) -> bytes:
            return _sse({"type": kind, "sequence_number": next(seq), **fields}, kind)

        final, start = _response_json(job), _response_json(job, in_progress=True)
        yield event("response.created", response=start)
        yield event("response.in_progress", response=start)
        for index, item in enumerate(final["output"]):
            if item["type"] == "reasoning":
                yield event("response.output_item.added", output_index=index,
                            item={**item, "summary": []})
                at: Json = {"item_id": item["id"], "output_index": index, "summary_index": 0}
                part: Json = {"type": "summary_text", "text": ""}
                yield event("response.reasoning_summary_part.added", **at, part=part)
                for token in job.thoughts[0]:
                    await self._tick()
                    yield event("response.reasoning_summary_text.delta", **at, delta=token)
                text = item["summary"][0]["text"]
                yield event("response.reasoning_summary_text.done", **at, text=text)
                yield event("response.reasoning_summary_part.done", **at,
                            part={**part, "text": text})
            else:
                yield event("response.output_item.added", output_index=index,
                            item={**item, "status": "in_progress", "content": []})
                at = {"item_id": item["id"], "output_index": index, "content_index": 0}
                empty = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
                yield event("response.content_part.added", **at, part=empty)
                answer = job.answers[0]
                table = _lps(answer, job.top, raw=False) if job.top is not None else None
                for pos, token in enumerate(answer.tokens):
                    await self._tick()
                    yield event("response.output_text.delta", **at, delta=token,
                                logprobs=[table[pos]] if table else [])
                part = item["content"][0]
                yield event("response.output_text.done", **at, text=part["text"],
                            logprobs=table or [])
                yield event("response.content_part.done", **at, part=part)
            yield event("response.output_item.done", output_index=index, item=item)
        yield event(f"response.{final['status']}", response=final)

    async def messages(self, request: Request) -> Response:
        body, raw = await _read(request)
        messages = _messages(body)
        texts: list[str] = []
        _texts(body.get("system"), texts)
        for message in messages:
            _texts(message.get("content"), texts)
        thinking = body.get("thinking")
        enabled = isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")
        job = self._job(raw, body, "msg_01", ["\n".join(texts)],
                        len(messages) + bool(body.get("system")), _max_tokens(body, "max_tokens"),
                        effort="medium" if enabled else None)
        return await self._reply(job, _message_json, self._message_stream)

    async def _message_stream(self, job: _Job) -> AsyncIterator[bytes]:
        def event(kind: str, **fields: Any) -> bytes:
            return _sse({"type": kind, **fields}, kind)

        final = _message_json(job)
        start = {**final, "content": [], "stop_reason": None,
                 "usage": {**final["usage"], "output_tokens": 1}}
        yield event("message_start", message=start)
        blocks = [("thinking", job.thoughts[0])] if job.thoughts[0] else []
        for index, (kind, tokens) in enumerate([*blocks, ("text", job.answers[0].tokens)]):
            yield event("content_block_start", index=index, content_block={"type": kind, kind: ""})
            if index == 0:
                yield event("ping")
            for token in tokens:
                await self._tick()
                yield event("content_block_delta", index=index,
                            delta={"type": f"{kind}_delta", kind: token})
            if kind == "thinking":
                signature = final["content"][0]["signature"]
                yield event("content_block_delta", index=index,
                            delta={"type": "signature_delta", "signature": signature})
            yield event("content_block_stop", index=index)
        yield event("message_delta",
                    delta={"stop_reason": final["stop_reason"], "stop_sequence": None},
                    usage={"output_tokens": final["usage"]["output_tokens"]})
        yield event("message_stop")

    async def models(self, request: Request) -> Response:
        if "anthropic-version" in request.headers:
            card: Json = {"type": "model", "id": TOY_MODEL, "display_name": "guardgate toy",
                          "created_at": "2025-01-01T00:00:00Z"}
            return _json({"data": [card], "has_more": False, "first_id": TOY_MODEL,
                          "last_id": TOY_MODEL})
        card = {"id": TOY_MODEL, "object": "model", "created": CREATED, "owned_by": "guardgate"}
        return _json({"object": "list", "data": [card]})

    async def health(self, request: Request) -> Response:
        return _json({"status": "ok", "service": "guardgate-toy", "model": TOY_MODEL})


# --------------------------------------------------------------------------- renderers


def _usage(job: _Job) -> Json:
    prompt, completion = job.prompt_tokens, job.completion_tokens
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": job.reasoning_tokens,
                                          "audio_tokens": 0, "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0}}


def _chat_json(job: _Job) -> Json:
    choices = []
    for i, (answer, thought) in enumerate(zip(job.answers, job.thoughts, strict=True)):
        message: Json = {"role": "assistant", "content": answer.text, "refusal": None,
                         "annotations": []}
        if thought:
            message["reasoning_content"] = "".join(thought)
        logprobs = None
        if job.top is not None:
            logprobs = {"content": _lps(answer, job.top), "refusal": None}
        choices.append({"index": i, "message": message, "logprobs": logprobs,
                        "finish_reason": answer.finish_reason})
    return {"id": job.rid, "object": "chat.completion", "created": CREATED, "model": job.model,
            "choices": choices, "usage": _usage(job), "service_tier": "default",
            "system_fingerprint": _FINGERPRINT}


def _completion_logprobs(job: _Job, i: int) -> Json | None:
    """Legacy logprobs of choice ``i``; offsets count from the end of its prompt."""
    if job.top is None:
        return None
    answer, offsets = job.answers[i], []
    position = len(job.prompts[i // job.n])
    for token in answer.tokens:
        offsets.append(position)
        position += len(token)
    table = answer.logprobs()
    return {"tokens": list(answer.tokens), "token_logprobs": [lp for lp, _ in table],
            "top_logprobs": [dict(top[:job.top]) for _, top in table], "text_offset": offsets}


def _completion_json(job: _Job) -> Json:
    choices = [{"text": a.text, "index": i, "logprobs": _completion_logprobs(job, i),
                "finish_reason": a.finish_reason} for i, a in enumerate(job.answers)]
    return {"id": job.rid, "object": "text_completion", "created": CREATED, "model": job.model,
            "choices": choices, "usage": _usage(job), "system_fingerprint": _FINGERPRINT}


def _effort(body: Json) -> str | None:
    reasoning = body.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
    return effort if isinstance(effort, str) else None


def _response_json(job: _Job, *, in_progress: bool = False) -> Json:
    body, answer, thought = job.body, job.answers[0], job.thoughts[0]
    done = "completed" if answer.finish_reason == "stop" else "incomplete"
    output: list[Json] = []
    if thought:
        output.append({"id": "rs_" + job.rid[5:], "type": "reasoning",
                       "summary": [{"type": "summary_text", "text": "".join(thought)}]})
    part: Json = {"type": "output_text", "annotations": [], "text": answer.text}
    if job.top is not None:
        part["logprobs"] = _lps(answer, job.top)
    output.append({"id": "msg_" + job.rid[5:], "type": "message", "status": done,
                   "content": [part], "role": "assistant"})
    usage = {"input_tokens": job.prompt_tokens,
             "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
             "output_tokens": job.completion_tokens,
             "output_tokens_details": {"reasoning_tokens": job.reasoning_tokens},
             "total_tokens": job.prompt_tokens + job.completion_tokens}
    instructions, reasoning = body.get("instructions"), body.get("reasoning")
    summary = reasoning.get("summary") if isinstance(reasoning, dict) else None
    incomplete = done == "incomplete" and not in_progress
    return {
        "id": job.rid, "object": "response", "created_at": CREATED,
        "status": "in_progress" if in_progress else done, "background": False, "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "instructions": instructions if isinstance(instructions, str) else None,
        "max_output_tokens": _max_tokens(body, "max_output_tokens"),
        "max_tool_calls": None, "model": job.model, "output": [] if in_progress else output,
        "parallel_tool_calls": True, "previous_response_id": None,
        "reasoning": {"effort": _effort(body),
                      "summary": summary if isinstance(summary, str) else None},
        "service_tier": "default", "store": False, "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"}, "tool_choice": "auto",
        "tools": [], "top_logprobs": job.top or 0, "top_p": 1.0, "truncation": "disabled",
        "usage": None if in_progress else usage, "user": None, "metadata": {},
    }


def _message_json(job: _Job) -> Json:
    answer, thought = job.answers[0], job.thoughts[0]
    content: list[Json] = []
    if thought:
        text = "".join(thought)
        signature = base64.b64encode(hashlib.sha512(f"toy\x1f{text}".encode()).digest())
        content.append({"type": "thinking", "thinking": text, "signature": signature.decode()})
    content.append({"type": "text", "text": answer.text})
    return {"id": job.rid, "type": "message", "role": "assistant", "model": job.model,
            "content": content, "stop_sequence": None,
            "stop_reason": "end_turn" if answer.finish_reason == "stop" else "max_tokens",
            "usage": {"input_tokens": job.prompt_tokens, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0, "output_tokens": job.completion_tokens}}


# --------------------------------------------------------------------------- app


def _openai_error(error: _BadRequest) -> Response:
    return _json({"error": {"message": error.message, "type": "invalid_request_error",
                            "param": error.param, "code": None}}, 400)


def _anthropic_error(error: _BadRequest) -> Response:
    return _json({"type": "error",
                  "error": {"type": "invalid_request_error", "message": error.message}}, 400)


_Handler = Callable[[Request], Awaitable[Response]]


def _endpoint(handler: _Handler, render: Callable[[_BadRequest], Response]) -> _Handler:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except _BadRequest as error:
            return render(error)
        except ClientDisconnect:  # nobody is left to read an answer
            return Response(status_code=400)

    return endpoint


def create_toy_app(*, token_delay: float = 0.0, seed: int = 0) -> Starlette:
    """The toy upstream as a Starlette app.

    ``token_delay``: seconds between streamed tokens; a non-streamed answer waits
    ``token_delay * tokens``, at most 2 s. ``seed``: another seed gives other answers.
    """
    toy = _Toy(token_delay, seed)
    return Starlette(routes=[
        Route("/", toy.health, methods=["GET"]),
        Route("/v1/models", toy.models, methods=["GET"]),
        Route("/v1/chat/completions", _endpoint(toy.chat, _openai_error), methods=["POST"]),
        Route("/v1/completions", _endpoint(toy.completions, _openai_error), methods=["POST"]),
        Route("/v1/responses", _endpoint(toy.responses, _openai_error), methods=["POST"]),
        Route("/v1/messages", _endpoint(toy.messages, _anthropic_error), methods=["POST"]),
    ])
