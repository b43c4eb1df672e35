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
reads them, and the population of every principal: this one classic day.
``traffic(seed, world=World.draw(rnd), days=3)`` instead simulates a
randomized world over several days, with more benign populations and the
adaptive attackers (`bench/worlds.py`).

Every record carries ``answer_text``: a short synthetic answer shaped like
what was asked (numbered steps for a reasoning ask, code for a code
question, one word for a classification). ``guardgate replay`` ignores
fields it does not know.

    python bench/simulate.py --seed 7 --out traffic.jsonl
    python bench/simulate.py --seed 7 --world --days 3 --out world.jsonl
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.worlds import World

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


# --- answers ------------------------------------------------------------------

_OPENINGS = (
    "Sure.", "Good question.", "Here is an overview.", "Short answer first.", "Of course.",
    "Let's look at it.", "Here's what I'd suggest.", "It depends, but mostly:",
)
_STEP_LEADS = (
    "First,", "Next,", "Then", "After that,", "Now", "From this,", "So", "Finally,",
)
_CLAIMS = (
    "identify what is given and what is asked", "note the constraint on {s}",
    "write the relation between the quantities", "substitute the known values",
    "check the edge case where it is zero", "compare the two cases of {s}",
    "simplify the expression", "apply the definition of {s}",
    "rule out the option that contradicts the premise", "combine the partial results",
    "estimate the order of magnitude", "verify the result against the original claim",
)
_LABELS = ("positive", "negative", "neutral", "billing", "bug", "feature", "yes", "no",
           "refund", "question", "other")


def answer_text(rnd: random.Random, kind: str, subject: str = "it") -> str:
    """A short synthetic answer shaped like what ``kind`` of request asks for:
    ``steps`` (numbered reasoning), ``essay`` (sections), ``code``, ``label``
    (one word), ``json``, ``token`` (one token), ``letter`` (a multiple-choice
    letter), ``list`` or ``prose``."""
    subject = subject[:60] or "it"
    if kind == "steps":
        count = rnd.randint(3, 7)
        lines = [f"{i + 1}. {rnd.choice(_STEP_LEADS)} "
                 + rnd.choice(_CLAIMS).format(s=subject) + "." for i in range(count)]
        return "\n".join(lines) + f"\nTherefore, the answer for {subject} follows."
    if kind == "essay":
        parts = [f"## {rnd.choice(('Overview', 'Background', 'Key ideas', 'Open problems'))}"]
        for _ in range(rnd.randint(2, 4)):
            parts.append(f"{subject.capitalize()}: " + rnd.choice(_CLAIMS).format(s=subject)
                         + ", " + rnd.choice(_CLAIMS).format(s=subject) + ".")
        return "\n\n".join(parts)
    if kind == "code":
        name = rnd.choice(("parse", "load", "merge", "fix", "handle", "compute"))
        return (f"Here is a version that works:\n```\ndef {name}(items):\n"
                f"    return [x for x in items if x is not None]\n```\n"
                f"This avoids the {rnd.choice(('copy', 'lookup', 'error', 'race'))}.")
    if kind == "label":
        return rnd.choice(_LABELS)
    if kind == "json":
        return f'{{"category": "{rnd.choice(NOUNS)}", "title": "{subject[:30]}"}}'
    if kind == "token":
        return rnd.choice(("The", "A", "Yes", "No", "1", "It"))
    if kind == "letter":
        return rnd.choice("ABCD")
    if kind == "list":
        return "\n".join(f"- {rnd.choice(NOUNS)} ({rnd.choice(WORDS)[:24]})"
                         for _ in range(rnd.randint(3, 6)))
    return (f"{rnd.choice(_OPENINGS)} About {subject}: {rnd.choice(WORDS)}; "
            f"{rnd.choice(_CLAIMS).format(s=subject)}.")


_ASKS_REASONING = re.compile(r"step|reason|chain of thought|thought process|derivation|"
                             r"follows from|justified|one idea to the|derive")


def kind_of(text: str, output: int, params: dict[str, Any]) -> str:
    """What a classic-day request asks for, from its text and parameters."""
    lower = text.lower()
    if output <= 1 or params.get("max_tokens") == 1:
        return "token"
    if "one word" in lower:
        return "label"
    if "as json" in lower:
        return "json"
    if _ASKS_REASONING.search(lower):
        return "steps"
    if "```" in text or "sql" in lower or " code" in lower:
        return "code"
    if "ideas" in lower or "name ideas" in lower:
        return "list"
    return "essay" if output >= 900 else "prose"


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
        # Answers are drawn apart, so that they change no request.
        self.answers = random.Random(f"answers:{seed}")

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
        text = messages[-1]["content"]
        record = {
            "ts": round(ts, 3), "method": "POST", "path": "/v1/chat/completions",
            "client_ip": account.ip, "headers": headers, "body": body,
            "usage": {"input_tokens": prompt_tokens, "output_tokens": output},
            "answer_text": answer_text(self.answers, kind_of(text, output, params),
                                       text[:40].rstrip()),
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


def traffic(
    seed: int, scale: float = 1.0, world: World | None = None, days: int = 1
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The records in time order, and each principal's population.

    Without ``world``: the classic simulated day (``days`` must be 1). With
    one (``World.draw(random.Random(seed))``, `bench.worlds`): that world
    over ``days`` days, from `START`; the adaptive populations with a history
    (aged sleepers, multi-day campaigns) need ``days`` >= 2."""
    if world is None:
        if days != 1:
            raise ValueError("the classic day is one day: pass a World for more")
        sim = Simulator(seed, scale)
        sim.day()
        populations = {f"acct:{a.principal}": a.population for a in sim.accounts}
        return list(sim.records()), populations
    from bench.worlds import WorldSimulator

    world_sim = WorldSimulator(seed, scale, world, days)
    world_sim.run()
    return world_sim.traffic()


def main() -> None:
    import orjson

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scale", type=float, default=1.0, help="population sizes times this")
    parser.add_argument("--world", action="store_true",
                        help="a randomized world drawn from the seed (default: the classic day)")
    parser.add_argument("--days", type=int, default=1, help="days simulated (with --world)")
    parser.add_argument("--out", default="-", help="JSON lines file (default: standard output)")
    args = parser.parse_args()
    world = None
    if args.world:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from bench.worlds import World

        world = World.draw(random.Random(args.seed))
    records, _ = traffic(args.seed, args.scale, world, args.days)
    lines = b"".join(orjson.dumps(r) + b"\n" for r in records)
    if args.out == "-":
        sys.stdout.buffer.write(lines)
    else:
        with open(args.out, "wb") as f:
            f.write(lines)


if __name__ == "__main__":
    main()
