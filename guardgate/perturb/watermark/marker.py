"""The marker: writes each slot of a text, or of a stream, as the key
chooses."""

from __future__ import annotations

from guardgate.perturb.watermark.key import Key
from guardgate.perturb.watermark.scanner import Scanner, Slot, parts


def _cased(word: str, like: str) -> str:
    if len(like) > 1 and like.isupper():
        return word.upper()
    if like[0].isupper():
        return word[0].upper() + word[1:]
    return word


class Marker:
    """Marks text with ``key``, as a stream: `feed` then `flush`. ``json``:
    the text is JSON (tool-call arguments): only the prose of its string
    values is marked, and it stays JSON of the same structure. In a fence
    whose info string is empty, a line is held back to its end (one line,
    read whole to tell prose from code)."""

    def __init__(self, key: Key, json: bool = False) -> None:
        self._key = key
        self._scanner = Scanner(json, key.vocabulary)
        self._held = ""
        # Fed after `_held` while a line of a fence with no info string is
        # read whole, and no line break came yet: the pieces of that line.
        self._line: list[str] = []
        self._pending: list[str] = []  # a word held back and the space after it
        self.slots = 0     # markable words seen
        self.changed = 0   # words replaced

    def for_json(self) -> Marker:
        """A new marker with the same key, for a text that is JSON."""
        return Marker(self._key, json=True)

    def feed(self, text: str) -> str:
        if self._line or (self._scanner.wants_line and "\n" not in self._held):
            # A line of a fence with no info string is read whole: nothing
            # goes out before its end.
            if "\n" not in text:
                self._line.append(text)
                return ""
            self._held += "".join(self._line)
            self._line.clear()
        held = self._held + text
        cut = len(held)
        while cut and not held[cut - 1].isspace():
            cut -= 1  # the word in progress
        while cut and held[cut - 1].isspace():
            cut -= 1  # and the space before it, which may go on: "\n" then "\n" ends a paragraph
        self._held = held[cut:]
        if not cut:
            return ""
        out = self._mark(held[:cut], final=False)
        self._held = self._scanner.rest + self._held  # a line not ended yet
        return out

    def flush(self) -> str:
        held, self._held = self._held + "".join(self._line), ""
        self._line.clear()
        out = self._mark(held, final=True) + "".join(self._pending)
        self._pending.clear()
        return out

    def _mark(self, text: str, final: bool) -> str:
        out: list[str] = []
        scanner = self._scanner
        pending = self._pending
        for chunk in scanner.chunks(text, final):
            slot = scanner.step(chunk)
            if pending:
                if scanner.waiting and chunk.isspace():
                    pending.append(chunk)
                    continue
                if slot is not None and slot.spans:
                    out.append(self._span(slot, pending, chunk))
                    pending.clear()
                    continue
                resolved = scanner.take_resolved()
                if resolved is not None:
                    pending[0] = self._write(pending[0], resolved)
                out.extend(pending)
                pending.clear()
            if scanner.waiting:
                pending.append(chunk)  # held until the next word: "not", a verb, "been"?
                continue
            out.append(chunk if slot is None else self._write(chunk, slot))
        return "".join(out)

    def _write(self, chunk: str, slot: Slot) -> str:
        """``chunk``, a slot's one word, written as the key chooses."""
        self.slots += 1
        chosen = self._key.choice(slot.context, slot.group, slot.candidates)
        if chosen == slot.word:
            return chunk
        self.changed += 1
        lead, core, trail = parts(chunk)
        if self._key.vocabulary.is_synonym(slot.group):
            self._scanner.replaced(chosen)
        return lead + _cased(self._typeset(chosen), core) + trail

    def _typeset(self, form: str) -> str:
        """``form`` ("don't") with the apostrophe the text uses."""
        apostrophe = self._scanner.apostrophe
        return form if apostrophe == "'" else form.replace("'", apostrophe)

    def _span(self, slot: Slot, pending: list[str], chunk: str) -> str:
        """A held word ("do", "it"), the space after it and the word that
        completes the slot ("not", "is"): written as the key chooses."""
        self.slots += 1
        chosen = self._key.choice(slot.context, slot.group, slot.candidates)
        if chosen == slot.word:
            return "".join(pending) + chunk
        self.changed += 1
        _, _, trail = parts(chunk)
        return _cased(self._typeset(chosen), pending[0]) + trail


def mark(text: str, key: bytes, json: bool = False) -> str:
    """``text`` marked whole; ``json``: it is JSON (tool-call arguments)."""
    marker = Marker(Key(key), json)
    return marker.feed(text) + marker.flush()
