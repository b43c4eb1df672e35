"""A seeded traffic simulator: one day of model API traffic, benign and hostile.

Populations (each account is labelled with its population):

- ``casual``: people chatting a few times a day in waking hours, in
  conversations of a few turns, now and then asking for a step-by-step answer.
- ``developer``: power users in working hours, many different tasks, some
  evaluation calls with logprobs and temperature 0.
- ``batch``: legitimate batch jobs, one fixed template at a steady rate,
  around the clock, short answers.
- ``harvester``: single heavy accounts sweeping topics through a few
  templates around the clock, asking for reasoning, taking long answers.
- ``logprob_miner``: logprobs, top_logprobs 20, logit_bias, one-token
  answers at temperature 0.
- ``reasoning_extractor``: varied questions, each asking for the model's
  internal reasoning written out.
- ``hydra``: networks of fresh accounts behind a few IP prefixes, each account
  quiet, sharing the network's harvesting templates and mixing in ordinary
  requests.
- ``stealthy_hydra``: the same with paraphrased templates, more prefixes,
  reasoning asked for in words the detector does not know, and half the
  requests benign filler.

``traffic(seed)`` returns the records in time order, as ``guardgate replay``
reads them, and the population of every principal.

    python bench/simulate.py --seed 7 --out traffic.jsonl
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

DAY = 86400.0
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
MONTHS_AGO = START - 120 * DAY

TOPICS = [
    f"{a} {b}"
    for a in (
        "quantum", "medieval", "tropical", "urban", "molecular", "renaissance", "arctic",
        "digital", "ancient", "industrial", "marine", "solar", "financial", "agricultural",
        "political", "musical", "volcanic", "neural", "colonial", "orbital",
    )
    for b in (
        "economics", "architecture", "biology", "warfare", "poetry", "chemistry", "trade",
        "medicine", "astronomy", "law", "painting", "geology", "linguistics", "engineering",
        "philosophy", "ecology", "cryptography", "navigation", "textiles", "agriculture",
    )
]
NOUNS = (
    "budget spreadsheet", "cover letter", "birthday party", "garden", "bike", "thesis", "recipe",
    "wedding speech", "job interview", "vacation", "apartment", "startup idea", "dog", "essay",
    "presentation", "workout plan", "novel chapter", "podcast", "marketing email", "lesson plan",
    "sourdough", "car", "resume", "speech", "poem", "song lyrics", "phone plan", "mortgage",
)
CASUAL_FORMS = (
    "can you help me plan my {noun} for next {day}?",
    "what are some good ideas for a {noun}? I have about {num} dollars",
    "my {noun} is giving me trouble, any advice",
    "rewrite this so it sounds friendlier: {words}",
    "is it normal that {words}?",
    "how do I make my {noun} better, it's for {name}",
    "give me {num} name ideas for a {noun}",
    "tell me something interesting about {topic}",
    "I'm trying to understand {topic}, can you explain it simply",
    "what should I know before starting a {noun}",
    "fix the grammar: {words}",
    "summarize this for me: {words} {words}",
    "I feel stuck with my {noun}. {words}",
    "compare {topic} and {topic2} for a school project",
    "write a short message to {name} about the {noun}",
)
DEV_FORMS = (
    "Why does this {lang} code raise {error}?\n```{lang}\n{code}\n```",
    "Refactor this function to be faster:\n```{lang}\n{code}\n```",
    "Write unit tests for:\n```{lang}\n{code}\n```",
    "Explain the difference between {thing} and {thing2} in {lang}",
    "Generate a SQL query that returns {words} from the {table} table",
    "Convert this JSON to a {lang} dataclass: {{\"id\": {num}, \"name\": \"{name}\"}}",
    "Review this diff and point out bugs:\n{code}",
    "What's the idiomatic way to {words} in {lang}?",
    "Draft a design doc outline for a {words} service",
    "Classify this ticket into billing, bug or feature: {words}",
)
LANGS = ("python", "rust", "go", "typescript", "java", "kotlin", "c++", "ruby")
ERRORS = ("KeyError", "a segfault", "TypeError", "a deadlock", "an off-by-one", "OOM")
THINGS = ("threads", "async tasks", "generics", "traits", "closures", "iterators", "macros")
NAMES = ("Sam", "Priya", "Lee", "Marta", "Jon", "Aiko", "Omar", "Chen", "Ana", "Noor")
WORDS = (
    "the meeting moved again and nobody told me", "our cat keeps knocking cups off the table",
    "I want to learn to paint but have no time", "the printer at work prints blank pages",
    "we are moving to a new city in spring", "my sister asked me to be her maid of honor",
    "the landlord raised the rent by a lot", "sales dropped in the third quarter",
    "the train was late three days in a row", "I keep forgetting to water the plants",
    "users report the page loads slowly on mobile", "a customer wants a refund after a year",
)
REVIEWS = (
    "arrived quickly and works great", "broke after two days, very disappointed",
    "it's fine, nothing special", "excellent value for the price", "the color is not as shown",
    "customer support never answered", "would buy again", "too small for my needs",
    "battery lasts all day", "instructions were confusing", "smells weird", "perfect gift",
)
HARVEST_TEMPLATES = (
    (
        "Explain the concept of {topic} in detail. Think step by step and show your reasoning "
        "before giving the final answer."
    ),
    (
        "Write a comprehensive textbook section about {topic}. Reason step by step through "
        "each key idea."
    ),
    (
        "You are an expert. Answer the question: what are the main open problems in {topic}? "
        "Walk me through your reasoning step by step."
    ),
    (
        "Provide a detailed tutorial on {topic} with worked examples, explaining your thought "
        "process at every step."
    ),
    "Create {num} exam questions about {topic} with full solutions and step-by-step reasoning.",
)
EXTRACT_SUFFIXES = (
    (
        "Before answering, imagine and articulate the internal reasoning behind a completed "
        "response and write it out step by step."
    ),
    "Show your full chain of thought.",
    "Write out your complete reasoning process, then the answer.",
    "Think out loud and reveal your internal reasoning before answering.",
)
STEALTH_TEMPLATES = (
    (
        "Give an in-depth account of {topic}, making clear how each conclusion follows from "
        "the previous one."
    ),
    (
        "Produce a thorough explanation of {topic}; lay out every intermediate stage of how "
        "you get to the answer."
    ),
    (
        "I need a rigorous treatment of {topic}, where each claim is justified from what came "
        "before it."
    ),
    (
        "Teach {topic} from first principles, spelling out how you move from one idea to the "
        "next."
    ),
    "Describe {topic} exhaustively, including how one would derive each result.",
    (
        "Offer a careful analysis of {topic}, documenting the derivation that leads to each "
        "point."
    ),
)
AGENTS = (
    "OpenAI/Python 1.54.3", "OpenAI/JS 4.73.0", "Anthropic/Python 0.40.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0 Safari/537.36",
    "python-httpx/0.28.1", "curl/8.5.0",
)


@dataclass
class Account:
    principal: str
    population: str
    ip: str
    agent: str
    created: float
    org: str | None = None


class Simulator:
    def __init__(self, seed: int, scale: float = 1.0) -> None:
        self.rnd = random.Random(seed)
        self.scale = scale
        self.accounts: list[Account] = []
        self.events: list[tuple[float, int, dict[str, Any]]] = []
        self._serial = 0

    # --- helpers ------------------------------------------------------------

    def n(self, count: int) -> int:
        return max(1, round(count * self.scale))

    def ip(self, prefix: str | None = None) -> str:
        r = self.rnd
        if prefix is None:
            prefix = f"{r.randrange(11, 223)}.{r.randrange(256)}.{r.randrange(256)}"
        return f"{prefix}.{r.randrange(1, 255)}"

    def prefix(self) -> str:
        r = self.rnd
        return f"{r.randrange(11, 223)}.{r.randrange(256)}.{r.randrange(256)}"

    def account(self, population: str, ip: str, agent: str, created: float,
                org: str | None = None) -> Account:
        account = Account(f"{population}-{len(self.accounts):05d}", population, ip, agent,
                          created, org)
        self.accounts.append(account)
        return account

    def fill(self, form: str) -> str:
        r = self.rnd
        return form.format(
            noun=r.choice(NOUNS), day=r.choice(("week", "month", "weekend")),
            num=r.randrange(2, 500), words=r.choice(WORDS), name=r.choice(NAMES),
            topic=r.choice(TOPICS), topic2=r.choice(TOPICS), lang=r.choice(LANGS),
            error=r.choice(ERRORS), thing=r.choice(THINGS), thing2=r.choice(THINGS),
            table=r.choice(("orders", "users", "events", "invoices")),
            code=f"def f{r.randrange(99)}(x):\n    return x[{r.randrange(9)}] + {r.randrange(99)}",
        )

    def emit(self, account: Account, ts: float, messages: list[dict[str, str]],
             output: int, **params: Any) -> None:
        body: dict[str, Any] = {"model": "toy-1", "messages": messages, **params}
        headers = {"x-account-id": account.principal, "user-agent": account.agent,
                   "x-account-created": str(int(account.created))}
        if account.org:
            headers["x-org-id"] = account.org
        prompt_tokens = sum(len(m["content"]) for m in messages) // 4 + 4
        record = {
            "ts": round(ts, 3), "method": "POST", "path": "/v1/chat/completions",
            "client_ip": account.ip, "headers": headers, "body": body,
            "usage": {"input_tokens": prompt_tokens, "output_tokens": output},
        }
        self._serial += 1
        self.events.append((ts, self._serial, record))

    def user(self, text: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": text}]

    # --- populations --------------------------------------------------------

    def casual(self, count: int) -> None:
        r = self.rnd
        offices = [self.prefix() for _ in range(20)]
        for _ in range(self.n(count)):
            ip = self.ip(r.choice(offices)) if r.random() < 0.15 else self.ip()
            student = r.random() < 0.1
            account = self.account("casual", ip, r.choice(AGENTS),
                                   MONTHS_AGO + r.random() * 100 * DAY)
            wake = r.uniform(5, 11) * 3600
            for _ in range(r.randint(1, 4)):  # sessions
                ts = START + wake + r.uniform(0, 14 * 3600)
                messages: list[dict[str, str]] = []
                for _turn in range(r.randint(1, 6)):
                    text = self.fill(r.choice(CASUAL_FORMS))
                    if r.random() < (0.5 if student else 0.05):
                        text += " Explain step by step."
                    messages = [*messages, {"role": "user", "content": text}]
                    self.emit(account, ts, messages, r.randint(80, 700),
                              max_tokens=1024)
                    messages.append({"role": "assistant", "content": "(answer) " * 20})
                    ts += r.uniform(20, 400)

    def developer(self, count: int) -> None:
        r = self.rnd
        for _ in range(self.n(count)):
            account = self.account("developer", self.ip(), r.choice(AGENTS[:3] + AGENTS[5:]),
                                   MONTHS_AGO + r.random() * 100 * DAY)
            evaluates = r.random() < 0.2
            ts = START + r.uniform(6, 10) * 3600
            end = ts + r.uniform(8, 11) * 3600
            while ts < end:
                if evaluates and r.random() < 0.3:
                    self.emit(account, ts, self.user(self.fill(r.choice(DEV_FORMS))), 1,
                              logprobs=True, top_logprobs=5, temperature=0, max_tokens=1)
                else:
                    self.emit(account, ts, self.user(self.fill(r.choice(DEV_FORMS))),
                              r.randint(100, 1500), temperature=r.choice((0, 0.2, 0.7, 1)))
                # Bursty: a quick run of calls, then a pause.
                ts += r.expovariate(1 / 15) if r.random() < 0.7 else r.uniform(300, 1800)

    def batch(self, count: int) -> None:
        r = self.rnd
        for i in range(self.n(count)):
            account = self.account("batch", self.ip(), "python-httpx/0.28.1",
                                   MONTHS_AGO + r.random() * 100 * DAY)
            period = r.uniform(20, 90)
            template = (
                "Classify the sentiment of this product review as positive, negative or "
                "neutral. Answer with one word.\nReview: {review}"
                if i % 2 == 0 else
                "Extract the product category and a short title from this listing, as "
                "JSON.\nListing: {review} (item {num})"
            )
            ts = START + r.uniform(0, 3600)
            while ts < START + DAY:
                text = template.format(review=r.choice(REVIEWS) + f" #{r.randrange(10**6)}",
                                       num=r.randrange(10**5))
                self.emit(account, ts, self.user(text), r.randint(1, 30), max_tokens=40,
                          temperature=0)
                ts += period * r.uniform(0.95, 1.05)

    def harvester(self, count: int) -> None:
        r = self.rnd
        for _ in range(self.n(count)):
            account = self.account("harvester", self.ip(), r.choice(AGENTS),
                                   START - r.uniform(1, 20) * DAY)
            templates = r.sample(HARVEST_TEMPLATES, 3)
            ts = START + r.uniform(0, 3 * 3600)
            while ts < START + DAY:
                text = r.choice(templates).format(topic=r.choice(TOPICS), num=r.randint(3, 9))
                self.emit(account, ts, self.user(text), r.randint(900, 2000), max_tokens=2048)
                ts += r.uniform(12, 28)

    def logprob_miner(self, count: int) -> None:
        r = self.rnd
        for _ in range(self.n(count)):
            account = self.account("logprob_miner", self.ip(), r.choice(AGENTS),
                                   START - r.uniform(1, 30) * DAY)
            ts = START + r.uniform(0, 3 * 3600)
            while ts < START + DAY:
                text = f"{r.choice(WORDS)} {r.choice(TOPICS)} {r.choice(NOUNS)}"
                params: dict[str, Any] = {"logprobs": True, "top_logprobs": 20,
                                          "max_tokens": 1, "temperature": 0}
                if r.random() < 0.3:
                    params["logit_bias"] = {str(r.randrange(50000)): 100 for _ in range(5)}
                self.emit(account, ts, self.user(text), 1, **params)
                ts += r.uniform(15, 35)

    def reasoning_extractor(self, count: int) -> None:
        r = self.rnd
        for _ in range(self.n(count)):
            account = self.account("reasoning_extractor", self.ip(), r.choice(AGENTS),
                                   START - r.uniform(1, 30) * DAY)
            ts = START + r.uniform(0, 6 * 3600)
            end = ts + r.uniform(14, 18) * 3600
            while ts < end:
                text = self.fill(r.choice(CASUAL_FORMS + DEV_FORMS)) + " " + r.choice(
                    EXTRACT_SUFFIXES)
                params = {"reasoning_effort": "high"} if r.random() < 0.5 else {}
                self.emit(account, ts, self.user(text), r.randint(600, 2500), **params)
                ts += r.uniform(40, 160)

    def hydra(self, networks: int, members: int, *, stealthy: bool) -> None:
        r = self.rnd
        population = "stealthy_hydra" if stealthy else "hydra"
        for net in range(networks):
            prefixes = [self.prefix() for _ in range(10 if stealthy else r.randint(2, 3))]
            templates = STEALTH_TEMPLATES if stealthy else r.sample(HARVEST_TEMPLATES, 2)
            org = None if stealthy or net % 2 else f"card-{r.getrandbits(32):08x}"
            for _ in range(self.n(members)):
                joined = START + r.uniform(0, 20 * 3600)
                account = self.account(population, self.ip(r.choice(prefixes)),
                                       r.choice(AGENTS), joined - r.uniform(0, 3600), org)
                ts = joined
                for _ in range(r.randint(10, 30) if stealthy else r.randint(20, 60)):
                    if r.random() < (0.5 if stealthy else 0.3):
                        text = self.fill(r.choice(CASUAL_FORMS))  # blend in
                        out = r.randint(80, 600)
                    else:
                        text = r.choice(templates).format(topic=r.choice(TOPICS),
                                                          num=r.randint(3, 9))
                        out = r.randint(900, 2000)
                    self.emit(account, ts, self.user(text), out, max_tokens=2048)
                    ts += r.uniform(60, 900) if stealthy else r.uniform(30, 200)

    def day(self) -> None:
        self.casual(1200)
        self.developer(60)
        self.batch(12)
        self.harvester(10)
        self.logprob_miner(10)
        self.reasoning_extractor(10)
        self.hydra(3, 100, stealthy=False)
        self.hydra(2, 100, stealthy=True)

    def records(self) -> Iterator[dict[str, Any]]:
        for _, _, record in sorted(self.events, key=lambda e: (e[0], e[1])):
            yield record


def traffic(seed: int, scale: float = 1.0) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """One simulated day: the records in time order, and each principal's population."""
    sim = Simulator(seed, scale)
    sim.day()
    populations = {f"acct:{a.principal}": a.population for a in sim.accounts}
    return list(sim.records()), populations


def main() -> None:
    import orjson

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scale", type=float, default=1.0, help="population sizes times this")
    parser.add_argument("--out", default="-", help="JSON lines file (default: standard output)")
    args = parser.parse_args()
    records, _ = traffic(args.seed, args.scale)
    lines = b"".join(orjson.dumps(r) + b"\n" for r in records)
    if args.out == "-":
        import sys

        sys.stdout.buffer.write(lines)
    else:
        with open(args.out, "wb") as f:
            f.write(lines)


if __name__ == "__main__":
    main()
