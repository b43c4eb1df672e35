"""The risk signals guardgate computes, with their default weights and ramps.

Every signal measures one thing (its ``measures``) as a raw value, which a
linear ramp maps to [0, 1]: ``low`` and below is 0, ``high`` and above is 1.
Its contribution to the score is ``weight`` times that. The policy's
``risk.signals`` changes any of the three numbers; weight 0 turns a signal
off. The signal table in docs/pipeline.md is generated from this one.

The catalogue is policy data: the policy validates ``risk.signals`` against
it and compiles its defaults, and `guardgate.risk` reads the compiled
policy, so it lives here and the risk package imports it, never the reverse.
A new signal is a line here and its raw value in `guardgate.risk.signals`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Signal:
    name: str
    weight: float
    low: float
    high: float
    cluster: bool   # cross-account: raises every member of a cluster
    measures: str
    why: str
    false_positives: str


SIGNALS: tuple[Signal, ...] = (
    Signal(
        "reasoning_elicitation", 0.30, 0.2, 0.8, False,
        "Share of the caller's recent requests (plus two neutral ones) whose prompt asks the "
        "model to write out its reasoning (step by step, chain of thought, internal reasoning, show your work) or "
        "asks for high reasoning effort.",
        "Reasoning traces are what distillers want most; campaigns ask for them on every "
        "prompt.",
        "Tutors, students and prompt engineers who ask for step-by-step answers; alone it "
        "reaches watch at most with the default weights.",
    ),
    Signal(
        "logprob_harvest", 0.45, 0.4, 0.85, False,
        "Mean over recent requests of a per-request harvest score: logprobs (more for 5, 10 "
        "and 20 alternatives per token), logit_bias, n of 2 or more, temperature 0, "
        "max_tokens of 4 or less.",
        "Logprobs and logit bias leak the model's output distribution, enough to recover "
        "its final layer; mining them needs these knobs on every request.",
        "Evaluation harnesses and classifiers that read token probabilities.",
    ),
    Signal(
        "account_youth", 0.10, 0.5, 0.95, False,
        "How new the account is: 1 when just created, 0 from a week old, from the trusted "
        "account-creation header; nothing without one (when guardgate first saw a caller "
        "says nothing of its age).",
        "Campaigns burn through fresh accounts; a new account is cheap to throw away.",
        "Every new customer; alone it stays far below any tier.",
    ),
    Signal(
        "volume", 0.15, 300, 3000, False,
        "Requests over the last few half-lives (decayed count), doubled for accounts "
        "younger than a day and raised by half for those younger than a week (by the "
        "account-creation header).",
        "Harvesting needs volume; fresh accounts doing it at once are the fake-account "
        "pattern.",
        "Heavy legitimate users and batch jobs; they stay below suspicious unless other "
        "signals join in.",
    ),
    Signal(
        "burst", 0.30, 5, 10, False,
        "Change from the caller's own baseline: its recent request rate (half-life) over its "
        "long-horizon rate (long_half_life), less one, scaled down below 500 recent requests; "
        "nothing until the caller has a history (requests on three days or more: against "
        "one earlier day, a nightly job looks like a burst on its second night).",
        "An account aged on a trickle of requests, then turned to harvesting, jumps far above "
        "its own past; honest use grows gradually.",
        "A launch day or a migration that moves a key's whole traffic at once.",
    ),
    Signal(
        "timing_regularity", 0.10, 0.5, 0.9, False,
        "One minus the spread (standard deviation of the log) of the gaps between requests, "
        "after 20 requests.",
        "Scripts fire at a steady pace; people are bursty.",
        "Scheduled jobs and polling clients.",
    ),
    Signal(
        "hours_active", 0.05, 14, 22, False,
        "Distinct hours of the last 24 with at least one request.",
        "Harvesters run around the clock; people sleep.",
        "Services with users in every time zone behind one key.",
    ),
    Signal(
        "template_reuse", 0.10, 0.5, 0.95, False,
        "One minus distinct prompt skeletons per request in the window, after 10 requests. "
        "A skeleton keeps a prompt's common words and folds numbers, quotes and other words "
        "into slots.",
        "Harvesters fill one template with thousands of topics.",
        "Applications that wrap user input in a fixed prompt (classifiers, translators).",
    ),
    Signal(
        "topic_sweep", 0.10, 0.4, 0.9, False,
        "Template reuse times the share of distinct prompts: one template, always new slot "
        "fillers.",
        "Sweeping a topic list through a template is how synthetic training sets are built.",
        "Batch jobs over distinct records, together with template reuse.",
    ),
    Signal(
        "output_ratio", 0.15, 10, 40, False,
        "Output tokens per input token over recent answered requests (fed back when the "
        "answer ends), after 5 answers.",
        "Short prompts that pull long answers maximise harvested text per request.",
        "Writing assistants asked for long drafts from short briefs.",
    ),
    Signal(
        "single_turn", 0.05, 0.8, 1.0, False,
        "Share of recent requests that are a single user message with no conversation, "
        "after 10 requests.",
        "Harvesting sends independent prompts; people converse.",
        "Stateless API integrations.",
    ),
    Signal(
        "template_cluster", 0.40, 3, 30, True,
        "Distinct accounts in the window whose prompts share a MinHash band of this request's "
        "skeleton, weighted by the cluster's risk: the share of its accounts whose own score "
        "(without cluster signals) reached risk.member_score.",
        "Hydra networks spread one harvesting template over thousands of accounts, each "
        "quiet on its own.",
        "A popular prompt shared by many ordinary users: few of them are risky on their own, "
        "which keeps the cluster's risk, and so the signal, low.",
    ),
    Signal(
        "system_cluster", 0.15, 3, 30, True,
        "Distinct accounts in the window sending the caller's exact system prompt, weighted "
        "by the cluster's risk (share of risky members).",
        "Harvesting tooling sends one system prompt from every account it runs.",
        "An application's own system prompt used by many of its users' keys; few risky "
        "members keep it low.",
    ),
    Signal(
        "prefix_cluster", 0.25, 5, 40, True,
        "Distinct accounts in the window from the caller's IP prefix, weighted by the "
        "cluster's risk (share of risky members).",
        "Fake accounts are operated from a few proxy networks.",
        "Offices and carrier NATs; few risky members keep it low.",
    ),
    Signal(
        "setup_cluster", 0.35, 5, 20, True,
        "Distinct accounts in the window sending the caller's exact system prompt from the "
        "caller's IP prefix: one setup, one network. Not weighted by the members' own risk: "
        "a campaign whose every account looks harmless alone is this many accounts run "
        "from one place with one configuration.",
        "Campaign tooling runs one configuration from a few proxy networks; unrelated "
        "people share a system prompt (an SDK's example) or a network (a carrier NAT), "
        "seldom both by the dozen.",
        "An office of a dozen or more keys behind one NAT using one internal system prompt.",
    ),
    Signal(
        "agent_cluster", 0.05, 20, 100, True,
        "Distinct accounts in the window sending the caller's exact user agent, weighted by "
        "the cluster's risk (share of risky members).",
        "Campaign tooling often carries one custom user agent.",
        "Popular SDK user agents; ordinary users keep the cluster's risk low.",
    ),
    Signal(
        "org_cluster", 0.15, 5, 50, True,
        "Distinct accounts in the window of the caller's trusted organisation (or payment "
        "fingerprint, passed as the org header), weighted by the cluster's risk (share of "
        "risky members).",
        "Fake accounts paid for by one card or organisation.",
        "Large legitimate organisations; few risky members keep it low.",
    ),
)

BY_NAME = {signal.name: signal for signal in SIGNALS}
# What a cluster signal groups accounts by: ``template`` for template_cluster, ...
CLUSTER_KINDS = tuple(s.name.removesuffix("_cluster") for s in SIGNALS if s.cluster)


def markdown_table() -> str:
    """The signal table of docs/pipeline.md, from this catalogue."""
    header = (
        "| signal | default weight | ramp (low -> high) | what it measures | why it indicates "
        "distillation | false positives |"
    )
    rows = [header, "| --- | ---: | --- | --- | --- | --- |"]
    for s in SIGNALS:
        rows.append(
            f"| `{s.name}` | {s.weight:.2f} | {s.low:g} -> {s.high:g} | {s.measures} | {s.why} "
            f"| {s.false_positives} |"
        )
    return "\n".join(rows)
