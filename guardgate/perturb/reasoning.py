"""The reasoning transform: answers lose the model's reasoning, and its
tokens leave the usage they report, so the usage counts what is sent.

What reasoning is differs by API (chat ``reasoning_content``, Responses
reasoning items, Anthropic thinking blocks); the walker knows, and drops
what follows into the places of what it dropped, so that the stream stays
valid for the official SDKs.
"""

from __future__ import annotations

from guardgate.apis.answers import Edit, Processor, Walker
from guardgate.perturb.degrade import Flag, On, registered

__all__ = ["DropReasoning"]


@registered(order=70)
class DropReasoning(Flag):
    """Drop reasoning from answers (and its tokens from their usage)."""

    drop_reasoning: On = True

    def processor(self, walker: Walker, secret: bytes) -> Processor:
        return _Dropper(walker)


class _Dropper(Processor):
    __slots__ = ("_walker",)

    def __init__(self, walker: Walker) -> None:
        self._walker = walker

    def answer(self, edit: Edit) -> None:
        self._walker.drop_reasoning(edit)

    def event(self, edit: Edit) -> None:
        self._walker.drop_reasoning(edit)
