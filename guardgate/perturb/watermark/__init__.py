"""A keyed lexical watermark on answer text, and its detector.

Where the text uses a word from a group of the synonym table
(``synonyms.txt``), the marker writes the group member that a keyed hash of
its context (the word before it) selects. Some groups hold only after
certain words (a base verb after "to" or a modal, a noun after a
determiner), which the table names. Negations are slots as well: "do not"
or "don't", "cannot" or "can't", written as the key chooses, and so are a
pronoun and its verb: "it is" or "it's", "you will" or "you'll". Text
marked this way, and any
model trained on enough of it, prefers the keyed member after each context
far more often than chance; the detector counts, over distinct (context,
group) slots, how often the keyed member appears, and reports a z-score and
the one-sided p-value of that count under the null (a text written without
the key hits each slot with probability 1 / its number of candidates).

What is never touched: fenced and inline code, lines indented as code or
starting with a prompt (>>>, ..., $), URLs, paths and e-mail addresses,
anything between braces or brackets (JSON; a stray one stops counting after
64 chunks or at a paragraph's end), words with digits or inner punctuation,
capitalized words inside a sentence (likely names), words in capitals,
negations that ask ("doesn't it?", "Why don't you"), and a pronoun's verb
where it may end a clause ("than it is in C", "what it is") or where "there"
is an adverb ("the file there is old"). Case and surrounding
punctuation are kept, and a contraction is written with the apostrophe the
text uses (straight or curly). After "a" or "an" only the members
that take the same article are candidates, so no article disagreement is
introduced.

`Marker` works on a stream: `feed` returns the text up to the last complete
word and holds back the space after it and the word in progress (and an auxiliary, a pronoun or a
contraction in "'s", until the next word shows whether "not" or the verb
follows, or whether "'s" stands for "has"); `flush` returns the rest.
Marking a stream chunk by chunk gives exactly the text marking it whole
does.

The modules, each importing only those above it: `table` (the synonym
groups and word lists), `zones` (where no word is marked), `scanner` (the
slots of a text), `key` (the keyed choice), `marker` and `detector`.
"""

from __future__ import annotations

from guardgate.perturb.watermark.detector import Detector, Evidence, detect, upper_tail
from guardgate.perturb.watermark.key import Key
from guardgate.perturb.watermark.marker import Marker, mark
from guardgate.perturb.watermark.scanner import Scanner
from guardgate.perturb.watermark.table import GROUP_OF, contexts, groups, takes_an

__all__ = [
    "GROUP_OF",
    "Detector",
    "Evidence",
    "Key",
    "Marker",
    "Scanner",
    "contexts",
    "detect",
    "groups",
    "mark",
    "takes_an",
    "upper_tail",
]
