"""Randomized worlds for the traffic simulator: honest traffic the detector
was never tuned on, and attackers who have read its code.

A `World` is drawn from a seed (`World.draw`) and fixes what one deployment's
traffic looks like: how many of each kind of caller there are, how diverse
their phrasing is, how many unrelated people share a viral prompt or an SDK's
example, how many sit behind an office NAT or a carrier-grade NAT, how often
developers ask for step-by-step explanations (or put "think step by step" in
their system prompt), how often clients retry, what the batch jobs look like,
which client strings are popular, which APIs are used, and which headers and
fields the traffic carries at all (account age, org, usage).

Benign populations (`BENIGN`) are drawn as people and programs behave, not
as a detector would like them to: they are never shaped to avoid any signal.
Attack populations (`ATTACKS`) are the classic ones of `bench.simulate` and
five adaptive campaigns (`ADAPTIVE`) written by someone who read README.md
and guardgate/risk/ (see each method's docstring).

`WorldSimulator` runs a world over ``days`` days from `START`. Principals are
opaque (nothing in a record names its population); `traffic` returns the
population of each.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from bench.simulate import (
    CASUAL_FORMS,
    DAY,
    DEV_FORMS,
    ERRORS,
    EXTRACT_SUFFIXES,
    HARVEST_TEMPLATES,
    LANGS,
    NAMES,
    NOUNS,
    REVIEWS,
    START,
    STEALTH_TEMPLATES,
    THINGS,
    TOPICS,
    WORDS,
    Account,
    Simulator,
    answer_text,
    kind_of,
)

HOUR = 3600.0
BENIGN = ("casual", "student", "developer", "app", "batch")
CLASSIC_ATTACKS = ("harvester", "logprob_miner", "reasoning_extractor", "hydra",
                   "stealthy_hydra")
ADAPTIVE = ("system_channel", "aged_sleeper", "residential", "plain_reasoning", "multi_day")
ATTACKS = CLASSIC_ATTACKS + ADAPTIVE
# Adaptive populations that need a history before the horizon's last day.
NEEDS_HISTORY = ("aged_sleeper", "multi_day")
PATHS = {"chat": "/v1/chat/completions", "responses": "/v1/responses",
         "messages": "/v1/messages"}
LOGPROBS_INCLUDE = "message.output_text.logprobs"
# The example policy's quotas (examples/policies/risk.yaml): 600 requests and
# 200,000 tokens a minute.
CEILING_RPM = 600
CEILING_TPM = 200_000

# --- phrasing pools -------------------------------------------------------------------

MORE_CASUAL_FORMS = (
    "what's a good gift for {name}? they like {topic}",
    "how long should I boil an egg for a {adj} yolk",
    "translate to spanish: {words}",
    "can you write a birthday message for {name}",
    "help me reply to this text: {words}",
    "what does {topic} even mean",
    "is a {noun} worth it in {year}?",
    "explain {topic} to a 10 year old",
    "I have {num} minutes, plan a workout for me",
    "what should I cook tonight with {food}",
    "pros and cons of a {noun}",
    "write a poem about my {noun}",
    "how do I tell {name} that {words}",
    "convert {num} fahrenheit to celsius",
    "recommend books like {book}",
    "what happened during the {event}?",
    "help me name my {animal}",
    "draft an email asking for a day off on {weekday}",
    "is it rude to mention that {words}?",
    "write a caption for a photo of my {noun}",
    "my kid asked why the sky is blue, what do I say",
    "give me a packing list for {place}",
    "how much should I tip in {place}",
    "what's the best way to learn {lang} as a beginner",
    "I need a {num}-word summary of {book}",
    "write a funny toast for {name}'s {noun}",
    "help me understand my {noun} contract: {words}",
    "how do I get a stain out of my {noun}",
    "what are cheap things to do in {place} this {weekday}",
    "can you check this for mistakes: {words}",
)
FOLLOW_UPS = (
    "thanks! can you make it shorter?", "more formal please", "why?",
    "can you give another example", "what about a {noun}?", "ok and then?",
    "hm, that doesn't seem right", "explain that last part", "make it funnier",
    "can you put that in a list", "and if I only have {num} dollars?", "in spanish please",
    "perfect, now a version for {name}", "too long, try again", "go on",
)
MORE_DEV_FORMS = (
    "How do I fix `{error}` in my {lang} {thing} code?",
    "Write a {lang} function that {task}",
    "Explain what this code does:\n```{lang}\n{code}\n```",
    "Write a bash one-liner to {task2}",
    "Translate this {lang} to {lang2}:\n```\n{code}\n```",
    "Write a docstring for:\n```{lang}\n{code}\n```",
    "Suggest a schema for storing {words} in postgres",
    "Summarize this stack trace:\n{trace}",
    "Write a commit message for: {words}",
    "Give me a kubernetes deployment for a {lang} service with {num} replicas",
    "How should I structure a {lang} project that {task}?",
    "Is {thing} thread-safe in {lang}?",
    "Optimize this SQL: SELECT * FROM {table} WHERE {col} = {num}",
    "What does this error mean: {error} at line {num}",
    "Add type hints to:\n```{lang}\n{code}\n```",
)
DEV_FOLLOW_UPS = (
    "that doesn't compile: {error}", "can you make it async?", "now add tests",
    "why did you use {thing} there?", "simpler please", "what's the complexity?",
    "it still raises {error}", "ok, and for {lang}?",
)
TASKS = ("parses ISO dates", "retries with backoff", "merges two sorted lists",
         "dedupes a list of dicts by id", "streams a large CSV", "validates an email",
         "computes a rolling average", "flattens nested JSON")
TASKS2 = ("find the largest files in a folder", "count lines in all .py files",
          "rename every .jpeg to .jpg", "kill whatever listens on port 8080",
          "tail the last error in a log")
FOODS = ("rice and eggs", "chickpeas", "leftover chicken", "spinach and feta", "tofu")
BOOKS = ("Dune", "The Hobbit", "Pride and Prejudice", "Sapiens", "Project Hail Mary")
EVENTS = ("French Revolution", "moon landing", "fall of Constantinople", "Cuban missile crisis")
ANIMALS = ("cat", "puppy", "goldfish", "parrot", "hamster")
PLACES = ("Lisbon", "Tokyo", "Mexico City", "a beach town", "Berlin", "Montreal")
WEEKDAYS = ("Monday", "Friday", "Saturday", "next Tuesday")
ADJS = ("runny", "jammy", "firm")

BENIGN_ASKS = (
    "Explain step by step.", "Can you walk me through it step by step?", "show your work please",
    "explain your reasoning", "break it down step by step", "how did you get that?",
    "please explain why, not just the answer", "can you go through it slowly?",
    "think it through carefully", "Let's think step by step.", "explain the logic",
    "I want to understand how to get there, not just the answer",
)
DEV_ASKS = (
    "Explain step by step what's happening.", "Walk me through your reasoning.",
    "Think step by step.", "explain why this works", "go line by line",
    "Explain your thought process before the code.", "reason about edge cases first",
)
DEV_SYSTEMS = (
    "You are a helpful assistant.", "You are a senior {lang} engineer. Answer concisely.",
    "You are a coding assistant. Reply with code only.", "Respond in JSON.",
    "You are a helpful assistant that answers questions about our internal API.",
)
DEV_COT_SYSTEMS = (
    "You are a helpful assistant. Think step by step before answering.",
    "You are a coding assistant. Explain your reasoning step by step, then give the code.",
    "Always reason carefully and show your work before the final answer.",
    "You are an expert {lang} developer. Think through the problem step by step.",
)
APP_SYSTEMS = (
    ("You are Ava, the support assistant for Brightline Bank. Be polite and brief. Never give "
     "financial advice."),
    "You are a writing assistant. Improve the user's text while keeping their voice.",
    ("You are Sage, a patient math tutor for high-school students. Always explain your "
     "reasoning step by step and check the student's work."),
    "You are a travel planner for Wayfarer. Suggest itineraries with times and costs.",
    "You are the recipe helper in the Pantry app. Use only ingredients the user lists.",
    "Answer the customer's question using only the context provided. If unsure, say so.",
)
POPULAR = (
    "Say this is a test", "Hello", "Hello, world", "Hello, Claude",
    "Write a one-sentence bedtime story about a unicorn.",
    "Write a haiku about recursion in programming.", "What is the capital of France?",
    "Tell me a joke.", "Explain {topic} like I'm five.",
    "Act as a Linux terminal. My first command is pwd.",
    "Write a LinkedIn post about my new {noun} that doesn't sound like AI.",
    "Give me a 30-day plan to learn {lang}.",
    "How many r's are in the word strawberry? Think step by step.",
    ("A bat and a ball cost $1.10 in total. The bat costs $1.00 more than the ball. How much "
     "does the ball cost? Explain step by step."),
    "Rewrite this email to sound more professional: {words}",
)
SDK_EXAMPLES = POPULAR[:8]
BATCH_TEMPLATES: tuple[tuple[str, str, int, int], ...] = (
    # (template, answer kind, output tokens low, high)
    (("Classify the sentiment of this product review as positive, negative or neutral. "
     "Answer with one word.\nReview: {review}"), "label", 1, 3),
    (("Extract the product category and a short title from this listing, as JSON.\n"
     "Listing: {review} (item {num})"), "json", 15, 40),
    ("Translate the following customer message into English:\n{words}", "prose", 20, 80),
    ("Summarize the following support ticket in two sentences:\n{words}. {words}. {words}.",
     "prose", 30, 90),
    (("Does the following comment violate our community guidelines? Answer yes or no.\n"
     "Comment: {review}"), "label", 1, 2),
    (("Assign up to three tags from [billing, shipping, quality, size, color, support] to "
     "this review. Return a comma-separated list.\nReview: {review}"), "label", 2, 8),
    ("Write a 50-word product description for: {noun} (SKU {num})", "prose", 50, 90),
    (("Classify the user's intent as one of: refund, cancel, upgrade, question, other.\n"
     "Message: {words}"), "label", 1, 2),
)
BATCH_SYSTEMS = ("You are a precise data-labelling assistant.", "Output only the answer.",
                 "You are a classifier. Respond with the label only.")
MC_QUESTIONS = (
    "Which of the following is true of {topic}?", "Which statement about {topic} is false?",
    "Which of these is an example of {topic}?", ("In {topic}, what happens when {num} units are "
    "added?"), "Which of the following best describes {thing}?",
)
SUBJECTS = ("high school biology", "college physics", "world history", "formal logic",
            "econometrics", "virology", "marketing", "moral scenarios")

# Adaptive attackers: what they ask, paraphrased per account.
HARVEST_OPENERS = ("", "", "Hi!", "Quick question.", "For a course I'm preparing:",
                   "I'm writing notes on this.", "Context: I'm a grad student.",
                   "Hello there,", "Please help:", "Next one:", "New topic.")
HARVEST_TASKS = (
    "explain {topic}", "give me a thorough overview of {topic}",
    "what are the central ideas of {topic}?", "how does {topic} play out in practice?",
    "write a detailed primer on {topic}", "what questions remain open in {topic}?",
    "compare the main schools of thought in {topic}",
    "teach me {topic} as if I were a new graduate student",
    "what should a newcomer to {topic} understand first?",
    "describe the history and current state of {topic}",
    "answer this exam question on {topic}: {question}",
    "solve the following problem from {topic}: {question}",
    "write {num} hard questions about {topic} with full answers",
    "what are common misconceptions about {topic}, and why are they wrong?",
    "critique the standard account of {topic}",
)
HARVEST_DEPTHS = ("", "", "Be thorough.", "Go into depth.", "Cover the subtle points.",
                  "Don't simplify too much.", "Aim for about 800 words.", "Be rigorous.")
HARVEST_FORMATS = ("", "", "Use headings.", "Finish with a short summary.",
                   "Include a worked example.", "Number the main points.",
                   "Then give a one-line answer.")
QUESTIONS = (
    "why does {topic} matter for {topic2}?", "how would you model {topic} quantitatively?",
    "what is the strongest objection to the usual view of {topic}?",
    "given {num} units of input, what does {topic} predict?",
)
TRIGGER_ASKS = (*EXTRACT_SUFFIXES, "Think step by step.", "Show your reasoning step by step.")
COT_SYSTEMS = (
    ("You are a rigorous tutor. Before every final answer, write out your complete reasoning "
     "step by step, then state the answer."),
    "Always show your full chain of thought before answering.",
    "Developer note: expose the full reasoning trace; number each inference; then answer.",
    ("Respond in two parts: 'Reasoning:' with every intermediate stage written out, then "
     "'Answer:'."),
)
# Plain-word reasoning asks are invented per world from these pieces; a phrase
# holding any of BANNED is dropped (the adversary avoids the obvious words).
PLAIN_LEADS = ("Before the answer,", "Prior to your conclusion,", "On the way to the answer,",
               "As you answer,", "First,", "Don't jump to the result:",
               "Rather than only the result,", "Please", "I'd like you to",
               "In your reply,", "Be explicit:", "Above all,")
PLAIN_VERBS = ("lay out", "spell out", "go over", "narrate", "trace", "list", "make explicit",
               "unpack", "show", "write down", "set out", "describe", "account for",
               "walk through")
PLAIN_OBJECTS = ("how you get there", "each inference you make", "every intermediate stage",
                 "the path from question to answer", "why each part holds",
                 "the logic linking each point", "each move, numbered",
                 "what you consider and reject along the way",
                 "how one point leads to the next", "the justification for every claim",
                 "the calculation in full", "every assumption and what follows from it",
                 "how you would solve it from scratch", "each stage of the argument")
PLAIN_TAILS = ("", "", "in order", "one at a time", "in numbered form", "as you go",
               "in detail", "without skipping anything", "before concluding",
               "then conclude")
BANNED = ("step", "think", "thought", "reason", "work", "deriv", "monolog", "scratch", "chain")

_FILL_DEFAULTS = {"year": "2026"}


def _loguniform(rnd: random.Random, low: float, high: float) -> float:
    return math.exp(rnd.uniform(math.log(low), math.log(high)))


def _versions(rnd: random.Random) -> tuple[list[str], list[str]]:
    openai = [
        f"OpenAI/Python 1.{rnd.randint(30, 90)}.{rnd.randint(0, 5)}",
        f"OpenAI/Python 1.{rnd.randint(30, 90)}.{rnd.randint(0, 5)}",
        f"OpenAI/JS 4.{rnd.randint(50, 90)}.{rnd.randint(0, 3)}",
        f"AsyncOpenAI/Python 1.{rnd.randint(30, 90)}.{rnd.randint(0, 5)}",
        f"python-httpx/0.2{rnd.randint(5, 8)}.{rnd.randint(0, 2)}",
        f"python-requests/2.3{rnd.randint(0, 2)}.{rnd.randint(0, 3)}",
        f"langchain-openai/0.{rnd.randint(1, 3)}.{rnd.randint(0, 20)}",
        f"curl/8.{rnd.randint(0, 11)}.{rnd.randint(0, 1)}",
        "Go-http-client/2.0", "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0 Safari/537.36",
    ]
    anthropic = [
        f"Anthropic/Python 0.{rnd.randint(30, 60)}.{rnd.randint(0, 3)}",
        f"Anthropic/Python 0.{rnd.randint(30, 60)}.{rnd.randint(0, 3)}",
        f"Anthropic/TypeScript 0.{rnd.randint(20, 40)}.{rnd.randint(0, 3)}",
        f"python-httpx/0.2{rnd.randint(5, 8)}.{rnd.randint(0, 2)}",
    ]
    return openai, anthropic


def _weighted(rnd: random.Random, names: list[str]) -> tuple[tuple[str, float], ...]:
    """Client strings with weights: the first, one SDK version, dominant."""
    rnd.shuffle(names)
    top = rnd.uniform(0.3, 0.8)
    rest = [rnd.random() ** 2 for _ in names[1:]]
    total = sum(rest) or 1.0
    return ((names[0], top), *((n, (1 - top) * w / total) for n, w in zip(names[1:], rest)))


def invent_plain_asks(rnd: random.Random, count: int) -> tuple[str, ...]:
    """Reasoning asks in plain words, new for each world."""
    asks: list[str] = []
    while len(asks) < count:
        tail = rnd.choice(PLAIN_TAILS)
        phrase = f"{rnd.choice(PLAIN_LEADS)} {rnd.choice(PLAIN_VERBS)} " \
                 f"{rnd.choice(PLAIN_OBJECTS)}{' ' + tail if tail else ''}."
        if not any(b in phrase.lower() for b in BANNED) and phrase not in asks:
            asks.append(phrase[0].upper() + phrase[1:])
    return tuple(asks)


@dataclass(frozen=True)
class World:
    """What one deployment's traffic looks like; `draw` picks one at random."""

    # Population sizes at scale 1: accounts, or (networks, members per network).
    casual: int
    student_classes: int
    class_size: int
    developer: int
    app: int
    batch: int
    harvester: int
    logprob_miner: int
    reasoning_extractor: int
    hydra: tuple[int, int]
    stealthy_hydra: tuple[int, int]
    system_channel: tuple[int, int]
    aged_sleeper: int
    residential: int
    plain_reasoning: int
    multi_day: int
    # Phrasing: the forms benign callers draw from, how often a caller adds a
    # personal touch, the popular prompts (viral ones, SDK examples) and the
    # share of unrelated callers who send them.
    casual_forms: tuple[str, ...]
    dev_forms: tuple[str, ...]
    paraphrase: float
    popular: tuple[str, ...]
    popular_share: float
    # Infrastructure: office NATs, carrier-grade NATs, time zones, APIs used
    # (chat, responses, messages), client strings with their weights.
    offices: int
    office_share: float
    cgnat_prefixes: int
    cgnat_share: float
    timezones: tuple[float, ...]
    api_mix: tuple[float, float, float]
    agents: tuple[tuple[str, float], ...]
    anthropic_agents: tuple[tuple[str, float], ...]
    # Benign behaviour.
    casual_daily: float        # chance a casual user is active on a given day
    casual_reasoning: float    # their mean share of step-by-step asks
    new_signups: float         # share of casual users whose account is created in the horizon
    student_reasoning: float
    dev_reasoning: float       # share of developers who ask for step-by-step explanations
    dev_system_cot: float      # share with "think step by step" in their system prompt
    dev_evaluators: float      # share running evaluations (logprobs, or chain-of-thought evals)
    retry_rate: float          # chance a request is retried (the same body again)
    batch_logprobs: float      # share of labelling jobs asking for logprobs
    batch_system: float        # share of jobs with a system prompt
    # What the traffic carries at all.
    sends_created: bool
    sends_org: bool
    sends_usage: bool
    # Adaptive attackers.
    plain_asks: tuple[str, ...]
    channels: tuple[str, ...]
    sleeper_burst: float                   # share of sleepers harvesting at the quota ceiling
    sleeper_requests: tuple[float, float]  # requests on the harvest day
    multi_day_rate: tuple[float, float]    # requests a day per account
    residential_rate: tuple[float, float]
    plain_rate: tuple[float, float]
    system_rate: tuple[float, float]
    adaptive_triggers: float   # share of adaptive accounts using the obvious words anyway
    aged_accounts: float       # share of adaptive accounts bought aged

    @classmethod
    def draw(cls, rnd: random.Random) -> World:
        all_casual = CASUAL_FORMS + MORE_CASUAL_FORMS
        all_dev = DEV_FORMS + MORE_DEV_FORMS
        openai, anthropic = _versions(rnd)
        chat = rnd.uniform(0.4, 1.0)
        responses = rnd.uniform(0, 1 - chat)
        low_multi = _loguniform(rnd, 30, 150)
        low_sleep = _loguniform(rnd, 1500, 6000)
        return cls(
            casual=rnd.randint(500, 2000),
            student_classes=rnd.randint(0, 4),
            class_size=rnd.randint(10, 40),
            developer=rnd.randint(20, 120),
            app=rnd.randint(0, 6),
            batch=rnd.randint(3, 15),
            harvester=rnd.randint(3, 8),
            logprob_miner=rnd.randint(3, 8),
            reasoning_extractor=rnd.randint(4, 12),
            hydra=(rnd.randint(1, 3), rnd.randint(40, 120)),
            stealthy_hydra=(rnd.randint(1, 2), rnd.randint(40, 120)),
            system_channel=(rnd.randint(1, 2), rnd.randint(40, 100)),
            aged_sleeper=rnd.randint(2, 5),
            residential=rnd.randint(15, 50),
            plain_reasoning=rnd.randint(10, 30),
            multi_day=rnd.randint(10, 30),
            casual_forms=tuple(rnd.sample(all_casual, rnd.randint(10, len(all_casual)))),
            dev_forms=tuple(rnd.sample(all_dev, rnd.randint(8, len(all_dev)))),
            paraphrase=rnd.uniform(0, 0.6),
            popular=tuple(rnd.sample(POPULAR, rnd.randint(1, 6))),
            popular_share=rnd.uniform(0, 0.35),
            offices=rnd.randint(3, 40),
            office_share=rnd.uniform(0, 0.4),
            cgnat_prefixes=rnd.randint(1, 6),
            cgnat_share=0.0 if rnd.random() < 0.3 else rnd.uniform(0.1, 0.7),
            timezones=tuple(rnd.sample((-8.0, -5.0, 0.0, 1.0, 2.0, 5.5, 8.0, 9.0),
                                       rnd.randint(1, 4))),
            api_mix=(chat, responses, 1 - chat - responses),
            agents=_weighted(rnd, openai),
            anthropic_agents=_weighted(rnd, anthropic),
            casual_daily=rnd.uniform(0.25, 0.9),
            casual_reasoning=rnd.uniform(0.01, 0.15),
            new_signups=rnd.uniform(0, 0.1),
            student_reasoning=rnd.uniform(0.3, 0.9),
            dev_reasoning=rnd.uniform(0, 0.6),
            dev_system_cot=rnd.uniform(0, 0.4),
            dev_evaluators=rnd.uniform(0.05, 0.3),
            retry_rate=rnd.uniform(0, 0.15),
            batch_logprobs=rnd.uniform(0, 0.5),
            batch_system=rnd.uniform(0, 0.6),
            sends_created=rnd.random() < 0.6,
            sends_org=rnd.random() < 0.6,
            sends_usage=rnd.random() < 0.75,
            plain_asks=invent_plain_asks(rnd, rnd.randint(5, 15)),
            channels=tuple(rnd.sample(("system", "developer", "instructions", "anthropic",
                                       "head"), rnd.randint(1, 5))),
            sleeper_burst=rnd.random(),
            sleeper_requests=(low_sleep, min(20_000.0, low_sleep * rnd.uniform(2, 5))),
            multi_day_rate=(low_multi, _loguniform(rnd, 300, 1500)),
            residential_rate=(_loguniform(rnd, 40, 150), _loguniform(rnd, 200, 600)),
            plain_rate=(_loguniform(rnd, 50, 200), _loguniform(rnd, 300, 1000)),
            system_rate=(_loguniform(rnd, 30, 100), _loguniform(rnd, 150, 400)),
            adaptive_triggers=rnd.uniform(0, 0.3),
            aged_accounts=rnd.uniform(0.3, 1.0),
        )

    def describe(self) -> str:
        """The world's main knobs, on one line."""
        missing = [name for name, sent in (("created", self.sends_created),
                                           ("org", self.sends_org),
                                           ("usage", self.sends_usage)) if not sent]
        return (
            f"casual {self.casual}, students {self.student_classes}x{self.class_size}, "
            f"developers {self.developer}, apps {self.app}, batch {self.batch}; "
            f"forms {len(self.casual_forms)}+{len(self.dev_forms)}, "
            f"popular {len(self.popular)} ({self.popular_share:.0%} of callers), "
            f"office NAT {self.office_share:.0%}, CGNAT {self.cgnat_share:.0%} on "
            f"{self.cgnat_prefixes} /24s, dev step-by-step {self.dev_reasoning:.0%} "
            f"(system {self.dev_system_cot:.0%}), retries {self.retry_rate:.0%}, "
            f"top client {self.agents[0][1]:.0%}; missing: {', '.join(missing) or 'none'}"
        )


@dataclass
class Persona:
    """An account and how it talks: API, model, system prompt, habits."""

    account: Account
    api: str = "chat"
    model: str = "gpt-4o-mini"
    tz: float = 0.0
    system: str | None = None
    system_role: str = "system"
    forms: tuple[str, ...] = ()
    touch: tuple[str, str] = ("", "")
    popular: float = 0.0       # share of requests that are a popular prompt
    reasoning: float = 0.0     # share of requests asking for step-by-step
    asks: tuple[str, ...] = BENIGN_ASKS
    retries: bool = True
    stream: bool = False
    max_tokens: int | None = None
    style: Style | None = None


@dataclass
class Style:
    """An attacker account's own way of phrasing a harvesting request."""

    openers: tuple[str, ...]
    tasks: tuple[str, ...]
    depths: tuple[str, ...]
    formats: tuple[str, ...]
    asks: tuple[str, ...]
    ask_first: bool


class WorldSimulator(Simulator):
    def __init__(self, seed: int, scale: float, world: World, days: int = 1) -> None:
        super().__init__(seed, scale)
        if days < 1:
            raise ValueError("days must be at least 1")
        self.rnd = random.Random(f"traffic:{seed}")
        self.world = world
        self.days = days
        self.end = START + days * DAY
        self.cgnat = [self.prefix() for _ in range(world.cgnat_prefixes)]
        self.office_nets = [(self.prefix(), self.org_id()) for _ in range(world.offices)]
        self.clouds = [self.prefix() for _ in range(8)]
        self.eval_items = [self.mc_item() for _ in range(400)]
        self.cot_items = [f"Question: {self.problem()}" for _ in range(200)]

    # --- helpers --------------------------------------------------------------------

    def org_id(self) -> str:
        return f"org-{self.rnd.getrandbits(40):010x}"

    def new_account(self, population: str, ip: str, agent: str, created: float,
                    org: str | None = None) -> Account:
        account = Account(f"{self.rnd.getrandbits(48):012x}", population, ip, agent, created,
                          org)
        self.accounts.append(account)
        return account

    def agent(self, api: str) -> str:
        pool = self.world.anthropic_agents if api == "messages" else self.world.agents
        return self.rnd.choices([a for a, _ in pool], [w for _, w in pool])[0]

    def api(self) -> str:
        return self.rnd.choices(("chat", "responses", "messages"), self.world.api_mix)[0]

    def model_for(self, api: str) -> str:
        if api == "messages":
            return self.rnd.choice(("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"))
        return self.rnd.choice(("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "o4-mini"))

    def day_at(self, day: int, tz: float, local_hour: float) -> float:
        return START + day * DAY + (local_hour - tz) * HOUR

    def fill(self, form: str) -> str:
        r = self.rnd
        return form.format(
            noun=r.choice(NOUNS), day=r.choice(("week", "month", "weekend")),
            num=r.randrange(2, 500), words=r.choice(WORDS), name=r.choice(NAMES),
            topic=r.choice(TOPICS), topic2=r.choice(TOPICS), lang=r.choice(LANGS),
            lang2=r.choice(LANGS), error=r.choice(ERRORS), thing=r.choice(THINGS),
            thing2=r.choice(THINGS), table=r.choice(("orders", "users", "events", "invoices")),
            col=r.choice(("status", "user_id", "created_at")), task=r.choice(TASKS),
            task2=r.choice(TASKS2), food=r.choice(FOODS), book=r.choice(BOOKS),
            event=r.choice(EVENTS), animal=r.choice(ANIMALS), place=r.choice(PLACES),
            weekday=r.choice(WEEKDAYS), adj=r.choice(ADJS), year=_FILL_DEFAULTS["year"],
            review=r.choice(REVIEWS) + f" #{r.randrange(10**6)}",
            question=r.choice(QUESTIONS).format(topic=r.choice(TOPICS), topic2=r.choice(TOPICS),
                                                num=r.randrange(2, 90)),
            code=f"def f{r.randrange(99)}(x):\n    return x[{r.randrange(9)}] + {r.randrange(99)}",
            trace=f"Traceback (most recent call last):\n  File \"app.py\", line {r.randrange(9, 400)}"
                  f", in handler\n{r.choice(ERRORS)}",
        )

    def mc_item(self) -> str:
        r = self.rnd
        question = r.choice(MC_QUESTIONS).format(topic=r.choice(TOPICS), thing=r.choice(THINGS),
                                                 num=r.randrange(2, 90))
        return (f"The following are multiple choice questions (with answers) about "
                f"{r.choice(SUBJECTS)}.\n\n{question}\n"
                + "".join(f"{c}. {r.choice(TOPICS)}\n" for c in "ABCD") + "Answer:")

    def personal(self, text: str, p: Persona) -> str:
        before, after = p.touch
        if before or after:
            text = f"{before}{text}{after}"
        if p.touch != ("", "") and self.rnd.random() < 0.3:
            text = text.lower()
        return text

    # --- records --------------------------------------------------------------------

    def body(self, p: Persona, turns: list[tuple[str, str]], system: str | None,
             params: dict[str, Any]) -> dict[str, Any]:
        max_tokens = params.get("max_tokens", p.max_tokens)
        body: dict[str, Any] = {"model": p.model}
        if p.api == "chat":
            messages = [{"role": p.system_role, "content": system}] if system else []
            messages += [{"role": role, "content": text} for role, text in turns]
            body["messages"] = messages
            if max_tokens is not None:
                body["max_tokens"] = max_tokens
            for key in ("temperature", "logprobs", "top_logprobs", "logit_bias", "n",
                        "reasoning_effort"):
                if key in params:
                    body[key] = params[key]
            if p.stream:
                body["stream"] = True
                body["stream_options"] = {"include_usage": True}
        elif p.api == "responses":
            if system:
                body["instructions"] = system
            if len(turns) == 1:
                body["input"] = turns[0][1]
            else:
                body["input"] = [{"role": role, "content": text} for role, text in turns]
            if max_tokens is not None:
                body["max_output_tokens"] = max_tokens
            if "temperature" in params:
                body["temperature"] = params["temperature"]
            if params.get("logprobs"):
                body["include"] = [LOGPROBS_INCLUDE]
                if params.get("top_logprobs"):
                    body["top_logprobs"] = params["top_logprobs"]
            if "reasoning_effort" in params:
                body["reasoning"] = {"effort": params["reasoning_effort"]}
            if p.stream:
                body["stream"] = True
        else:
            body["max_tokens"] = max_tokens or 1024
            if system:
                body["system"] = system
            body["messages"] = [{"role": role, "content": text} for role, text in turns]
            if "temperature" in params:
                body["temperature"] = params["temperature"]
            if params.get("reasoning_effort") == "high":
                budget = self.rnd.choice((2048, 4096, 8192))
                body["max_tokens"] = max(body["max_tokens"], budget + 1024)
                body["thinking"] = {"type": "enabled", "budget_tokens": budget}
            if p.stream:
                body["stream"] = True
        return body

    def send(self, p: Persona, ts: float, turns: list[tuple[str, str]], kind: str,
             output: int, *, system: str | None = None, no_system: bool = False,
             subject: str = "", **params: Any) -> str:
        """Emit one request (and the client's retries of it); return the answer."""
        if not no_system and system is None:
            system = p.system
        if no_system:
            system = None
        body = self.body(p, turns, system, params)
        world = self.world
        account = p.account
        headers = {"x-account-id": account.principal, "user-agent": account.agent}
        if world.sends_created:
            headers["x-account-created"] = str(int(account.created))
        if world.sends_org and account.org:
            headers["x-org-id"] = account.org
        chars = sum(len(text) for _, text in turns) + len(system or "")
        answer = answer_text(self.answers, kind, subject or turns[-1][1][:40].rstrip())
        record: dict[str, Any] = {
            "ts": 0.0, "method": "POST", "path": PATHS[p.api], "client_ip": account.ip,
            "headers": headers, "body": body,
        }
        attempts = 1
        if p.retries and self.rnd.random() < world.retry_rate:
            attempts += 1 if self.rnd.random() < 0.7 else 2
        for attempt in range(attempts):
            line = dict(record, ts=round(ts, 3))
            if attempt == attempts - 1:
                if world.sends_usage:
                    line["usage"] = {"input_tokens": chars // 4 + 4, "output_tokens": output}
                line["answer_text"] = answer
            self.push(ts, line)
            ts += self.rnd.uniform(1, 45)
        return answer

    def push(self, ts: float, record: dict[str, Any]) -> None:
        if START <= ts < self.end:
            self._serial += 1
            self.events.append((ts, self._serial, record))

    def traffic(self) -> tuple[list[dict[str, Any]], dict[str, str]]:
        populations = {f"acct:{a.principal}": a.population for a in self.accounts}
        return list(self.records()), populations

    # --- benign ---------------------------------------------------------------------

    def benign_persona(self, population: str, ip: str, org: str | None, created: float,
                       forms: tuple[str, ...]) -> Persona:
        r = self.rnd
        world = self.world
        api = self.api()
        account = self.new_account(population, ip, self.agent(api), created, org)
        touch = ("", "")
        if r.random() < world.paraphrase:
            touch = (r.choice(("", "hey ", "hi, ", "quick q: ", "pls ", "ok so ")),
                     r.choice(("", " thanks", " thx!", " please", "??", " :)", "...")))
        personal = tuple(r.sample(forms, min(len(forms), r.randint(2, 8))))
        return Persona(
            account, api=api, model=self.model_for(api), tz=r.choice(world.timezones),
            forms=personal, touch=touch,
            popular=r.uniform(0.1, 0.5) if r.random() < world.popular_share else 0.0,
            stream=r.random() < 0.3, max_tokens=r.choice((None, None, 1024, 2048, 4096)),
        )

    def where(self, allow_cgnat: bool = True) -> tuple[str, str | None]:
        """A client's address: behind a carrier NAT, an office NAT (with the
        company's org), or a home line of its own."""
        r = self.rnd
        roll = r.random()
        if allow_cgnat and self.world.cgnat_share and roll < self.world.cgnat_share:
            return self.ip(r.choice(self.cgnat)), None
        roll = r.random()
        if roll < self.world.office_share:
            prefix, org = r.choice(self.office_nets)
            return self.ip(prefix), org
        return self.ip(), None

    def active_days(self, chance: float) -> list[int]:
        days = [d for d in range(self.days) if self.rnd.random() < chance]
        return days or [self.rnd.randrange(self.days)]

    def casual_text(self, p: Persona) -> tuple[str, str]:
        """A casual prompt and the kind of answer it asks for."""
        r = self.rnd
        if p.popular and r.random() < p.popular:
            text = self.fill(r.choice(self.world.popular))
        else:
            text = self.personal(self.fill(r.choice(p.forms)), p)
        if r.random() < p.reasoning:
            text += " " + r.choice(p.asks)
        return text, kind_of(text, 500, {})

    def casual_users(self) -> None:
        r = self.rnd
        world = self.world
        for _ in range(self.n(world.casual)):
            ip, org = self.where()
            created = START - _loguniform(r, 1, 400) * DAY
            days = self.active_days(world.casual_daily)
            if r.random() < world.new_signups:  # signed up during the horizon
                created = START + days[0] * DAY + r.uniform(0, 20 * HOUR)
            p = self.benign_persona("casual", ip, org, created, world.casual_forms)
            p.reasoning = min(0.8, world.casual_reasoning * r.expovariate(1))
            home = p.account.ip
            for day in days:
                for _ in range(r.choice((1, 1, 1, 2, 2, 3, 4))):
                    # Some sessions from a phone, behind the carrier's NAT.
                    p.account.ip = (self.ip(r.choice(self.cgnat))
                                    if r.random() < world.cgnat_share / 2 else home)
                    self.conversation(p, self.day_at(day, p.tz, r.uniform(7, 23.5)),
                                      r.choice((1, 1, 1, 2, 2, 3, 4, 6)))
            p.account.ip = home

    def conversation(self, p: Persona, ts: float, turns: int) -> None:
        r = self.rnd
        history: list[tuple[str, str]] = []
        for turn in range(turns):
            if turn and r.random() < 0.5:
                text = self.fill(r.choice(FOLLOW_UPS))
                kind = "prose"
            else:
                text, kind = self.casual_text(p)
            history.append(("user", text))
            if ts >= max(p.account.created, START):
                output = r.randint(150, 900) if kind == "steps" else r.randint(40, 700)
                answer = self.send(p, ts, history, kind, output)
                history.append(("assistant", answer))
            ts += r.uniform(20, 400)

    def students(self) -> None:
        """Classes: students behind a campus NAT, one problem set per class,
        most asking for step-by-step solutions, around a deadline."""
        r = self.rnd
        world = self.world
        for _ in range(world.student_classes):
            campus = [self.prefix() for _ in range(r.randint(1, 2))]
            org = self.org_id() if r.random() < 0.5 else None
            tz = r.choice(world.timezones)
            problems = [self.problem() for _ in range(r.randint(8, 15))]
            deadline = r.randrange(self.days)
            for _ in range(self.n(world.class_size)):
                created = START - _loguniform(r, 20, 300) * DAY
                if r.random() < 0.3:
                    created = START + deadline * DAY - r.uniform(0, 6) * DAY
                p = self.benign_persona("student", self.ip(r.choice(campus)), org, created,
                                        world.casual_forms)
                p.tz = tz
                p.asks = BENIGN_ASKS + ("show all work", "explain how to solve it",
                                        "can you solve this step by step?")
                reasons = r.random() < world.student_reasoning
                days = [deadline] + ([deadline - 1] if deadline and r.random() < 0.4 else [])
                for day in days:
                    ts = self.day_at(day, tz, r.uniform(15, 23.5))
                    for problem in r.sample(problems, min(len(problems), r.randint(3, 12))):
                        text = problem
                        if reasons and r.random() < 0.8:
                            ask = r.choice(p.asks)
                            text = f"{ask} {problem}" if r.random() < 0.5 else f"{problem} {ask}"
                        history = [("user", self.personal(text, p))]
                        answer = self.send(p, ts, history, "steps" if reasons else "prose",
                                           r.randint(200, 900))
                        if r.random() < 0.3:
                            ts += r.uniform(30, 300)
                            history += [("assistant", answer), ("user", r.choice((
                                "why?", "I don't get the second step", ("can you check my "
                                f"answer: {r.randrange(2, 99)}"), "explain that part again")))]
                            self.send(p, ts, history, "steps", r.randint(100, 500))
                        ts += r.uniform(120, 1500)

    def problem(self) -> str:
        r = self.rnd
        a, b, c = r.randint(2, 19), r.randint(1, 50), r.randint(51, 200)
        return r.choice((
            f"Solve for x: {a}x + {b} = {c}",
            (f"A train leaves at {r.randint(1, 11)}:00 going {r.randint(40, 120)} km/h. Another "
            f"leaves {r.randint(1, 3)} hours later at {r.randint(60, 160)} km/h. When does it "
            "catch up?"),
            f"Find the derivative of {a}x^3 - {b}x^2 + {r.randint(1, 9)}",
            f"Balance the chemical equation: {r.choice(('Fe + O2 -> Fe2O3', 'C3H8 + O2 -> CO2 + H2O', 'Al + HCl -> AlCl3 + H2'))}",
            f"What were the main causes of the {r.choice(EVENTS)}?",
            f"A ball is thrown up at {r.randint(5, 30)} m/s. How high does it go?",
            f"Prove that the sum of the first {a} odd numbers is {a * a}.",
            f"What is the probability of rolling a total of {r.randint(3, 11)} with two dice?",
        ))

    def developers(self) -> None:
        r = self.rnd
        world = self.world
        companies: list[tuple[str | None, str | None]] = []
        for _ in range(max(1, self.n(world.developer) // 4)):
            office = self.prefix() if r.random() < 0.6 else None
            companies.append((office, self.org_id()))
        for _ in range(self.n(world.developer)):
            office, org = r.choice(companies)
            ip = self.ip(office) if office and r.random() < 0.7 else self.where(False)[0]
            p = self.benign_persona("developer", ip, org, START - _loguniform(r, 5, 900) * DAY,
                                    world.dev_forms)
            p.asks = DEV_ASKS + BENIGN_ASKS[:4]
            if r.random() < world.dev_system_cot:
                p.system = r.choice(DEV_COT_SYSTEMS).format(lang=r.choice(LANGS))
            elif r.random() < 0.4:
                p.system = r.choice(DEV_SYSTEMS).format(lang=r.choice(LANGS))
            p.system_role = "developer" if r.random() < 0.3 else "system"
            if r.random() < world.dev_reasoning:
                p.reasoning = r.uniform(0.2, 0.6)
            effort = r.choice(("medium", "high")) if r.random() < 0.2 else None
            evaluates = r.random() < world.dev_evaluators
            for day in self.active_days(0.85):
                ts = self.day_at(day, p.tz, r.uniform(7, 11))
                end = ts + r.uniform(6, 10) * HOUR
                if evaluates and r.random() < 0.5:
                    self.evaluation(p, self.day_at(day, p.tz, r.uniform(8, 22)))
                self.dev_session(p, ts, end, effort)

    def dev_session(self, p: Persona, ts: float, end: float, effort: str | None) -> None:
        r = self.rnd
        history: list[tuple[str, str]] = []
        if r.random() < 0.15:  # trying the SDK out: its example, a few times
            example = r.choice(SDK_EXAMPLES)
            for _ in range(r.randint(3, 15)):
                self.send(p, ts, [("user", example)], "prose", r.randint(5, 40))
                ts += r.uniform(2, 20)
        while ts < end:
            if history and r.random() < 0.3:
                history.append(("user", self.fill(r.choice(DEV_FOLLOW_UPS))))
            else:
                text = self.fill(r.choice(p.forms))
                if p.popular and r.random() < p.popular / 3:
                    text = self.fill(r.choice(self.world.popular))
                if r.random() < p.reasoning:
                    ask = r.choice(p.asks)
                    text = f"{text}\n{ask}" if r.random() < 0.7 else f"{ask}\n{text}"
                history = [("user", text)]
            text = history[-1][1]
            kind = kind_of(text, 800, {})
            if p.system and "step" in p.system.lower():
                kind = "steps"
            params: dict[str, Any] = {"temperature": r.choice((0, 0.2, 0.7, 1))}
            if effort:
                params["reasoning_effort"] = effort
            answer = self.send(p, ts, history, kind, r.randint(100, 1500), **params)
            history.append(("assistant", answer))
            if len(history) > 12:
                history = []
            ts += r.expovariate(1 / 15) if r.random() < 0.7 else r.uniform(300, 1800)

    def evaluation(self, p: Persona, ts: float) -> None:
        """An evaluation run: a public benchmark's items, in a quick burst;
        multiple choice read from logprobs, or chain-of-thought answers."""
        r = self.rnd
        size = r.randint(50, 400)
        if p.api != "messages" and r.random() < 0.6:
            for item in r.sample(self.eval_items, min(size, len(self.eval_items))):
                self.send(p, ts, [("user", item)], "letter", 1, no_system=True, logprobs=True,
                          top_logprobs=5, max_tokens=1, temperature=0)
                ts += r.uniform(0.2, 3)
        else:
            for item in r.sample(self.cot_items, min(size, len(self.cot_items))):
                self.send(p, ts, [("user", f"{item}\nAnswer: Let's think step by step.")],
                          "steps", r.randint(150, 600), no_system=True, max_tokens=512,
                          temperature=0)
                ts += r.uniform(0.5, 5)

    def apps(self) -> None:
        """Products built on the API: one key serving many end users, one
        system prompt, conversations all day long."""
        r = self.rnd
        world = self.world
        for _ in range(self.n(world.app) if world.app else 0):
            api = r.choice(("chat", "chat", "responses"))
            system = r.choice(APP_SYSTEMS)
            cloud = r.choice(self.clouds)
            account = self.new_account("app", self.ip(cloud), self.agent(api),
                                       START - _loguniform(r, 30, 700) * DAY, self.org_id())
            p = Persona(account, api=api, model=self.model_for(api), system=system,
                        forms=world.casual_forms, reasoning=0.05, max_tokens=1024)
            rag = "context" in system
            docs = [f"{r.choice(WORDS)}. {r.choice(WORDS)}. Policy {r.randrange(900)}: "
                    f"{r.choice(TOPICS)}." for _ in range(30)]
            per_day = _loguniform(r, 300, 3000)
            tz = r.choice(world.timezones)
            for day in range(self.days):
                count = int(per_day * r.uniform(0.8, 1.2))
                sent = 0
                while sent < count:
                    ts = self.day_at(day, tz, min(23.9, max(0.0, r.gauss(15, 4))))
                    history: list[tuple[str, str]] = []
                    for _ in range(r.choice((1, 1, 2, 3, 5))):
                        text, kind = self.casual_text(p)
                        if rag:
                            text = f"Context:\n{r.choice(docs)}\n{r.choice(docs)}\n\n" \
                                   f"Question: {text}"
                        if "step by step" in system:
                            kind = "steps"
                        history.append(("user", text))
                        answer = self.send(p, ts, history, kind, r.randint(60, 700))
                        history.append(("assistant", answer))
                        ts += r.uniform(15, 240)
                        sent += 1

    def batch_jobs(self) -> None:
        """Batch jobs: one template each, around the clock at a steady rate or
        in a nightly window; some with a system prompt, labelling jobs some
        with logprobs for a confidence."""
        r = self.rnd
        world = self.world
        for _ in range(self.n(world.batch)):
            template, kind, low, high = r.choice(BATCH_TEMPLATES)
            org = self.org_id()
            account = self.new_account(
                "batch", self.ip(r.choice(self.clouds) if r.random() < 0.6 else None),
                r.choice(("python-httpx/0.28.1", "python-requests/2.32.3", self.agent("chat"))),
                START - _loguniform(r, 20, 700) * DAY, org)
            p = Persona(account, api="chat" if r.random() < 0.8 else "responses",
                        model=self.model_for("chat"), retries=True, max_tokens=high + 10)
            if r.random() < world.batch_system:
                p.system = r.choice(BATCH_SYSTEMS)
            params: dict[str, Any] = {"temperature": 0}
            if kind == "label" and r.random() < world.batch_logprobs:
                params.update(logprobs=True, top_logprobs=r.choice((1, 2, 5, 10)),
                              max_tokens=r.choice((1, 2, 5)))
            if r.random() < 0.5:
                start, span, period = 0.0, DAY, _loguniform(r, 20, 600)
            else:
                start, span = r.uniform(0, 24) * HOUR, r.uniform(0.5, 6) * HOUR
                period = _loguniform(r, 2, 30)
            period = max(period, span / 1500)
            for day in range(self.days):
                if r.random() > 0.9:
                    continue
                ts = START + day * DAY + start + r.uniform(0, 600)
                stop = ts + span
                while ts < stop:
                    text = template.format(review=r.choice(REVIEWS) + f" #{r.randrange(10**6)}",
                                           num=r.randrange(10**5), words=r.choice(WORDS),
                                           noun=r.choice(NOUNS))
                    self.send(p, ts, [("user", text)], kind, r.randint(low, high), **params)
                    ts += period * r.uniform(0.9, 1.1)

    # --- classic attackers, on one day of the horizon -----------------------------------

    def attacker(self, population: str, day: int, created_before: tuple[float, float],
                 ip: str | None = None, org: str | None = None,
                 joined: float | None = None) -> Persona:
        r = self.rnd
        when = START + day * DAY if joined is None else joined
        account = self.new_account(population, ip or self.ip(), self.agent("chat"),
                                   when - r.uniform(*created_before), org)
        return Persona(account, model=self.model_for("chat"), retries=False)

    def classic_harvester(self) -> None:
        r = self.rnd
        for _ in range(self.n(self.world.harvester)):
            day = r.randrange(self.days)
            p = self.attacker("harvester", day, (1 * DAY, 20 * DAY))
            templates = r.sample(HARVEST_TEMPLATES, 3)
            ts = START + day * DAY + r.uniform(0, 6 * HOUR)
            end, gap = ts + r.uniform(6, 24) * HOUR, r.uniform(10, 40)
            while ts < end:
                topic = r.choice(TOPICS)
                text = r.choice(templates).format(topic=topic, num=r.randint(3, 9))
                self.send(p, ts, [("user", text)], "steps", r.randint(900, 2000),
                          subject=topic, max_tokens=2048)
                ts += gap * r.uniform(0.6, 1.4)

    def classic_logprob_miner(self) -> None:
        r = self.rnd
        for _ in range(self.n(self.world.logprob_miner)):
            day = r.randrange(self.days)
            p = self.attacker("logprob_miner", day, (1 * DAY, 30 * DAY))
            ts = START + day * DAY + r.uniform(0, 6 * HOUR)
            end, gap = ts + r.uniform(6, 24) * HOUR, r.uniform(10, 40)
            while ts < end:
                text = f"{r.choice(WORDS)} {r.choice(TOPICS)} {r.choice(NOUNS)}"
                params: dict[str, Any] = {"logprobs": True, "top_logprobs": 20,
                                          "max_tokens": 1, "temperature": 0}
                if r.random() < 0.3:
                    params["logit_bias"] = {str(r.randrange(50000)): 100 for _ in range(5)}
                self.send(p, ts, [("user", text)], "token", 1, **params)
                ts += gap * r.uniform(0.6, 1.4)

    def classic_reasoning_extractor(self) -> None:
        r = self.rnd
        for _ in range(self.n(self.world.reasoning_extractor)):
            day = r.randrange(self.days)
            p = self.attacker("reasoning_extractor", day, (1 * DAY, 30 * DAY))
            ts = START + day * DAY + r.uniform(0, 6 * HOUR)
            end = ts + r.uniform(14, 18) * HOUR
            while ts < end:
                text = self.fill(r.choice(CASUAL_FORMS + DEV_FORMS)) + " " + r.choice(
                    EXTRACT_SUFFIXES)
                params: dict[str, Any] = {"reasoning_effort": "high"} if r.random() < 0.5 else {}
                self.send(p, ts, [("user", text)], "steps", r.randint(600, 2500), **params)
                ts += r.uniform(40, 160)

    def classic_hydra(self, stealthy: bool) -> None:
        r = self.rnd
        population = "stealthy_hydra" if stealthy else "hydra"
        networks, members = self.world.stealthy_hydra if stealthy else self.world.hydra
        for net in range(networks):
            day = r.randrange(self.days)
            prefixes = [self.prefix() for _ in range(10 if stealthy else r.randint(2, 3))]
            templates = STEALTH_TEMPLATES if stealthy else r.sample(HARVEST_TEMPLATES, 2)
            org = None if stealthy or net % 2 else self.org_id()
            for _ in range(self.n(members)):
                joined = START + day * DAY + r.uniform(0, 20 * HOUR)
                p = self.attacker(population, day, (0, HOUR), self.ip(r.choice(prefixes)), org,
                                  joined)
                ts = joined
                for _ in range(r.randint(10, 30) if stealthy else r.randint(20, 60)):
                    if r.random() < (0.5 if stealthy else 0.3):
                        text, kind, out = self.fill(r.choice(CASUAL_FORMS)), "prose", 300
                    else:
                        topic = r.choice(TOPICS)
                        text = r.choice(templates).format(topic=topic, num=r.randint(3, 9))
                        kind, out = "steps", r.randint(900, 2000)
                    self.send(p, ts, [("user", text)], kind, out, max_tokens=2048)
                    ts += r.uniform(60, 900) if stealthy else r.uniform(30, 200)

    # --- adaptive attackers -----------------------------------------------------------

    def style(self, plain: bool) -> Style:
        r = self.rnd
        asks = (tuple(r.sample(self.world.plain_asks, min(3, len(self.world.plain_asks))))
                if plain else tuple(r.sample(TRIGGER_ASKS, 2)))
        return Style(
            openers=tuple(r.sample(HARVEST_OPENERS, 4)),
            tasks=tuple(r.sample(HARVEST_TASKS, r.randint(5, 10))),
            depths=tuple(r.sample(HARVEST_DEPTHS, 3)),
            formats=tuple(r.sample(HARVEST_FORMATS, 3)),
            asks=asks, ask_first=r.random() < 0.3,
        )

    def harvest_text(self, style: Style, topic: str, ask: bool = True) -> str:
        r = self.rnd
        task = r.choice(style.tasks).format(
            topic=topic, num=r.randint(3, 9),
            question=r.choice(QUESTIONS).format(topic=topic, topic2=r.choice(TOPICS),
                                                num=r.randrange(2, 90)))
        parts = [r.choice(style.openers), task[0].upper() + task[1:],
                 r.choice(style.depths), r.choice(style.formats)]
        if ask and style.asks:
            if style.ask_first:
                parts.insert(1, r.choice(style.asks))
            else:
                parts.append(r.choice(style.asks))
        return " ".join(part for part in parts if part)

    def adaptive_account(self, population: str, ip: str, first: float, api: str = "chat",
                         agent: str | None = None, org: str | None = None) -> Persona:
        """An adaptive campaign's account: the most common client string of
        the deployment, and an account bought aged or made just before use."""
        r = self.rnd
        if r.random() < self.world.aged_accounts:
            created = START - r.uniform(10, 120) * DAY
        else:
            created = first - r.uniform(0, 2 * HOUR)
        pool = self.world.anthropic_agents if api == "messages" else self.world.agents
        account = self.new_account(population, ip, agent or pool[0][0], created, org)
        return Persona(account, api=api, model=self.model_for(api), retries=False,
                       max_tokens=r.choice((None, 2048, 4096)))

    def plain(self) -> bool:
        return self.rnd.random() >= self.world.adaptive_triggers

    def system_channel(self) -> None:
        """The chain-of-thought request moved out of the user turn: into the
        system prompt, a developer message, Responses ``instructions``,
        Anthropic ``system``, or the head of a long prompt (past the last
        4,000 characters). Fresh or aged accounts of one network: a few
        shared /24s, one client string, one system prompt, synchronized
        waves; the user turn is a plain question."""
        r = self.rnd
        networks, members = self.world.system_channel
        for _ in range(networks):
            day = r.randrange(self.days)
            prefixes = [self.prefix() for _ in range(r.randint(2, 6))]
            cot = (r.choice(COT_SYSTEMS) if not self.plain() else
                   f"For every question: {r.choice(self.world.plain_asks).rstrip('.')}. "
                   "Then give the answer.")
            material = [" ".join(f"{r.choice(WORDS).capitalize()} in {r.choice(TOPICS)}."
                                 for _ in range(90))[:4300] for _ in range(6)]
            first = START + day * DAY + r.uniform(0, 6 * HOUR)
            waves: list[float] = []
            ts, last = first, first + r.uniform(12, 24) * HOUR
            while ts < last:
                waves.append(ts)
                ts += r.uniform(15, 60) * 60
            for _ in range(self.n(members)):
                channel = r.choice(self.world.channels)
                api = {"instructions": "responses", "anthropic": "messages"}.get(channel, "chat")
                p = self.adaptive_account("system_channel", self.ip(r.choice(prefixes)), first,
                                          api)
                p.system = None if channel == "head" else cot
                p.system_role = "developer" if channel == "developer" else "system"
                style = self.style(True)
                per_wave = _loguniform(r, *self.world.system_rate) / max(1, len(waves))
                for wave in waves:
                    count = int(per_wave) + (r.random() < per_wave % 1)
                    ts = wave + r.uniform(0, 300)
                    for _ in range(count):
                        topic = r.choice(TOPICS)
                        text = self.harvest_text(style, topic, ask=False)
                        if channel == "head":
                            text = f"{cot}\n\nReference material:\n{r.choice(material)}\n\n" \
                                   f"Question: {text}"
                        self.send(p, ts, [("user", text)], "steps", r.randint(900, 2000),
                                  subject=topic)
                        ts += r.uniform(2, 60)

    def aged_sleeper(self) -> None:
        """Accounts aged by a trickle of ordinary requests on every earlier
        day of the horizon (an account older than a week, with a history),
        each on a residential /24 of its own, that harvest on the last day:
        steadily around the clock, or in a burst at the example policy's
        quota ceiling (600 requests, 200,000 tokens a minute)."""
        if self.days < 2:
            return
        r = self.rnd
        world = self.world
        last = self.days - 1
        for _ in range(self.n(world.aged_sleeper)):
            p = self.adaptive_account("aged_sleeper", self.ip(), START)
            p.account.created = START - r.uniform(14, 90) * DAY
            p.forms = world.casual_forms
            for day in range(last):
                for _ in range(r.randint(1, 3)):
                    text, kind = self.casual_text(p)
                    self.send(p, self.day_at(day, 0, r.uniform(0, 24)), [("user", text)], kind,
                              r.randint(40, 500))
            style = self.style(self.plain())
            total = int(_loguniform(r, *world.sleeper_requests))
            if r.random() < world.sleeper_burst:
                per_minute = min(CEILING_RPM, CEILING_TPM / 1600)
                ts = self.day_at(last, 0, r.uniform(0, 20))
                gap = 60 / per_minute
            else:
                ts = self.day_at(last, 0, r.uniform(0, 1))
                gap = (DAY - HOUR) / total
            history: list[tuple[str, str]] = []
            for topic in self.sweep(total):
                if history and r.random() < 0.1:
                    history.append(("user", r.choice(("go on", "expand the second part",
                                                      "more detail on that"))))
                else:
                    history = [("user", self.harvest_text(style, topic))]
                answer = self.send(p, ts, history, "steps", r.randint(800, 2000), subject=topic)
                history.append(("assistant", answer))
                ts += r.expovariate(1 / gap)

    def sweep(self, count: int) -> list[str]:
        """Topics in coverage order: each topic once before any twice."""
        order: list[str] = []
        while len(order) < count:
            batch = list(TOPICS)
            self.rnd.shuffle(batch)
            order.extend(batch)
        return order[:count]

    def residential(self) -> None:
        """One residential /24 per account, a client string of its own among
        the common ones, developer-like sessions in working hours (bursts and
        pauses, follow-ups, ordinary coding questions mixed in), harvesting
        questions paraphrased in the account's own style, on every day."""
        r = self.rnd
        world = self.world
        for _ in range(self.n(world.residential)):
            api = self.api()
            p = self.adaptive_account("residential", self.ip(), START, api, self.agent(api))
            p.tz = r.choice(world.timezones)
            p.forms = world.dev_forms
            style = self.style(self.plain())
            rate = _loguniform(r, *world.residential_rate)
            filler = r.uniform(0.2, 0.4)
            topics = iter(self.sweep(int(rate * self.days * 2) + 10))
            for day in self.active_days(0.9):
                ts = self.day_at(day, p.tz, r.uniform(7, 11))
                hours = r.uniform(6, 10)
                count = int(rate * r.uniform(0.8, 1.2))
                mean_gap = hours * HOUR / max(1, count)
                history: list[tuple[str, str]] = []
                for _ in range(count):
                    if r.random() < filler:
                        history = [("user", self.fill(r.choice(p.forms)))]
                        kind, topic = "code", ""
                    elif history and r.random() < 0.2:
                        history.append(("user", r.choice(("ok, go deeper on that",
                                                          "and the second point?", "continue"))))
                        kind, topic = "steps", ""
                    else:
                        topic = next(topics)
                        history = [("user", self.harvest_text(style, topic))]
                        kind = "steps"
                    answer = self.send(p, ts, history, kind, r.randint(600, 1800), subject=topic)
                    history.append(("assistant", answer))
                    # bursty like a developer: quick runs, then pauses
                    ts += (r.expovariate(1 / (mean_gap * 0.3)) if r.random() < 0.7
                           else r.expovariate(1 / (mean_gap * 2.6)))

    def plain_reasoning(self) -> None:
        """Reasoning asked for in plain words no trigger list holds (invented
        per world), over varied everyday, coding and study questions."""
        r = self.rnd
        world = self.world
        for _ in range(self.n(world.plain_reasoning)):
            day = r.randrange(self.days)
            api = self.api()
            ts = START + day * DAY + r.uniform(0, 10 * HOUR)
            p = self.adaptive_account("plain_reasoning", self.ip(), ts, api, self.agent(api))
            asks = r.sample(world.plain_asks, min(len(world.plain_asks), r.randint(2, 4)))
            style = self.style(True)
            days = [day] + ([day + 1] if day + 1 < self.days and r.random() < 0.3 else [])
            for d in days:
                ts = START + d * DAY + r.uniform(0, 10 * HOUR)
                hours = r.uniform(10, 16)
                count = int(_loguniform(r, *world.plain_rate) * hours / 24)
                for _ in range(count):
                    roll = r.random()
                    if roll < 0.4:
                        text = self.fill(r.choice(world.casual_forms + world.dev_forms))
                    else:
                        text = self.harvest_text(style, r.choice(TOPICS), ask=False)
                    ask = r.choice(asks)
                    text = f"{ask} {text}" if r.random() < 0.3 else f"{text} {ask}"
                    params: dict[str, Any] = {"reasoning_effort": "high"} if r.random() < 0.2 else {}
                    self.send(p, ts, [("user", text)], "steps", r.randint(600, 2000), **params)
                    ts += r.expovariate(count / (hours * HOUR))

    def multi_day(self) -> None:
        """A campaign over every day of the horizon at a steady rate below the
        volume ramp, around the clock with irregular gaps, sweeping topics in
        coverage order, its accounts on their own prefixes or a small proxy
        pool."""
        if self.days < 2:
            return
        r = self.rnd
        world = self.world
        pool = [self.prefix() for _ in range(r.randint(1, 4))]
        own = r.random() < 0.5
        for _ in range(self.n(world.multi_day)):
            api = self.api()
            ip = self.ip() if own else self.ip(r.choice(pool))
            p = self.adaptive_account("multi_day", ip, START, api)
            style = self.style(self.plain())
            rate = _loguniform(r, *world.multi_day_rate)
            topics = iter(self.sweep(int(rate * self.days * 1.5) + 10))
            ts = START + r.uniform(0, HOUR)
            history: list[tuple[str, str]] = []
            while ts < self.end:
                if history and r.random() < 0.15:
                    history.append(("user", "continue"))
                else:
                    history = [("user", self.harvest_text(style, next(topics)))]
                answer = self.send(p, ts, history, "steps", r.randint(600, 1800))
                history.append(("assistant", answer))
                ts += r.expovariate(rate / DAY)

    # --- the whole horizon ------------------------------------------------------------

    def run(self) -> None:
        self.casual_users()
        self.students()
        self.developers()
        self.apps()
        self.batch_jobs()
        self.classic_harvester()
        self.classic_logprob_miner()
        self.classic_reasoning_extractor()
        self.classic_hydra(stealthy=False)
        self.classic_hydra(stealthy=True)
        self.system_channel()
        self.aged_sleeper()
        self.residential()
        self.plain_reasoning()
        self.multi_day()


def world_traffic(seed: int, scale: float = 1.0,
                  days: int = 3) -> tuple[World, list[dict[str, Any]], dict[str, str]]:
    """The world drawn from ``seed``, its records and populations."""
    from bench.simulate import traffic

    world = World.draw(random.Random(seed))
    records, populations = traffic(seed, scale, world, days)
    return world, records, populations
