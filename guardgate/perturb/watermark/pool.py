"""A pool of candidate synonym groups, and a deployment's private table.

The shipped table (``synonyms.txt``) is a seed that anyone holding the
package can read. A deployment that wants slots the package does not
enumerate builds a pool of candidate groups from a lexical resource, WordNet
3.0 as Debian's ``wordnet-base`` installs it, and lets its key choose which
of them are live: `private_table` writes that choice in the table's own
format, to be kept out of the image like the key (``guardgate watermark
keygen``). The deployment may add groups of its own to the file.

The candidates follow the table's meaning rules as far as WordNet can tell
them, and a group is left out rather than risk a wrong substitution (a
customer's answer made worse):

- Members are single lower-case words, each tagged at least `MIN_COUNT`
  times in the group's sense in WordNet's sense-tagged counts
  (``cntlist.rev``), and that sense is each member's dominant one in its
  part of speech: its most frequent, holding `MIN_SHARE` of the word's
  tagged uses with one use granted to each other sense (so that a word of
  many senses needs more evidence), and so a swap keeps the meaning in most
  contexts.
- A word also common in another part of speech ("aim" the noun and the
  verb) is a member only where the word before it fixes the part of speech:
  a base-form verb after the table's ``@verb`` words, a noun after its
  ``@det`` words. An adjective or adverb that is also another part of
  speech, and any word that is an inflected form of another ("learned",
  "feeding", "cows"), is left out.
- Members agree in how they are used: a verb's sentence frames ("help you
  find" has one "assist" lacks), an adjective's position. A sense with a
  usage label (slang, colloquial), a region or a topic is left out, and so
  is a word with a sense in a technical topic (`TECHNICAL_TOPICS`) or in
  software (`TECHNICAL`), and of two members one of which holds the other or
  is spelt alike ("lid" and "eyelid", "whiskey" and "whisky"), the rarer.
- Groups that passed all that were read one by one, and the words that
  made one unsafe are listed (`UNSAFE`: register, a software sense, a sense
  or construction the others lack).
- Inflected forms are groups of their own, made only where WordNet's own
  morphology confirms them: a noun's plural (not of mass nouns), a verb's
  third person, its ``-ing`` form and its regular past (past tense and
  participle alike). They are spelt from WordNet's exception lists where
  those list the word (doubled consonants, irregular plurals) and by the
  regular rules otherwise; a form whose spelling varies ("travelled",
  "traveled") is not made, and a form is kept only when WordNet reads it
  back as that word alone and does not list it as a word of its own
  ("glasses", "meeting", "advanced").
- Words of the shipped table, of its word sets and contractions, and
  function words are never members, so a private table stands beside the
  shipped one.

Reading WordNet needs nltk (the ``keygen`` extra); the gateway never does.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import os
import re
import shutil
import tempfile
import warnings
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from difflib import SequenceMatcher
from importlib import resources
from pathlib import Path
from typing import Any

from guardgate.perturb.watermark.table import SPELLED, parse

__all__ = [
    "TECHNICAL",
    "UNSAFE",
    "Candidate",
    "PoolError",
    "candidate_groups",
    "private_table",
    "shipped_words",
]


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


class PoolError(Exception):
    """WordNet or nltk is missing or unreadable; the message says how to install it."""


# The part-of-speech names a candidate carries, by WordNet's letter.
POS_NAMES = {"n": "noun", "v": "verb", "a": "adjective", "r": "adverb"}
# Which inflections a part of speech has groups of.
FORMS = {"noun": ("base", "plural"), "verb": ("base", "third person", "ing", "past"),
         "adjective": ("base",), "adverb": ("base",)}

# A member's tagged uses in the group's sense, at least; and the share of
# the word's tagged uses in that part of speech the sense holds, at least,
# with one use granted to each of the word's other senses.
MIN_COUNT = 2
MIN_SHARE = 0.4
# A word is also another part of speech when that part's tagged uses are at
# least this share of the group's part's.
OTHER_POS_SHARE = 0.05
MIN_LENGTH = 3

# Words with a technical sense in a software text, or in an answer about
# one, that WordNet's dominant sense does not show ("string" the cord,
# "thread" the yarn); they are never members.
TECHNICAL = frozenset(_words("""
    allocate argument attribute branch buffer bug cache call child class cluster code column
    comment commit complex component element entry factory field file flag frame function
    handle hash instance interrupt item key leaf link list lock log loop map method module
    node object option package parameter pipe pointer port print procedure process project
    property public query queue record request result return root row run schema scope
    script shell slice socket sort stack store stream string table tag task thread token
    tree trigger type value variable view word worker
"""))

# Words of candidate groups that passed every filter above, read one by one
# and left out (WordNet 3.0 is fixed, so the list is complete for it).
# Informal, dated or offensive, or frequent in the counts through a single
# text:
_REGISTER = frozenset(_words("""
    acetonemia ammo babe beget belly cheery comrade crook dad fella ginmill god grandma
    granny grownup icebox jimdandy jimhickey john jolly ketosis lad lavatory licking mamma
    mommy papa parson pecs puncher queer scoot shenanigan sire sod wallop welter youngster
"""))
# With a sense in software, or in answers about it, the others lack
# ("defer" a call, "throttle" requests, "review" code, a "heap", "decorate"
# a function, "fail silently", an "endless" loop, an expression "evaluated"):
_SOFTWARE = frozenset(_words("""
    appraise approximation arbitrarily assemble assess bucket cargo chunk computation
    concurrent construct crawl crop deadlock decorate defer demon effect endless epoch
    evaluate exercise fiscal heap help impute interpret maintenance manager miss mix number
    observe paste penalty precedence priority product randomly rating recover repeat
    retrieve review schedule sensor setup shuffle silently sleep source spark start style
    termination throttle total traverse underscore visualize wait writer
"""))
# Not interchangeable with the group's other members in most contexts: a
# second common sense, a construction or a register the others lack ("happen
# to", "remember to", "at a glance", "for the most part", "city" and
# "metropolis", "creak" and "squeak"):
_SENSE = frozenset(_words("""
    normally comparable similar expand expands expanding expanded extend extends extending
    extended absolutely affair alarm alien appear arouse ascertain assurance beast belowground
    blithely buffet bureau chase climax clod clump coil colossal comic commence committee
    compliment concept conduct connote conquer consequently corroborate crazily creature cry
    culminate curious defeat delicious delirium desperation die different differentiation
    dirty dismiss dispute distinct doctrine dog doom drapery earnestly edgy edifice effort
    embrace employ engulf enjoy enterprise espouse everlastingly evidence explode exploit
    fabric faith fall falloff falsify fancy fashion father feat feeding fence fencing fierce
    fond forestall forever frenzy fright frog gag glance glean grin guardian guidance
    hallmark hamper happen happening happily hazard holiday household housing idea impasse
    impression incline infective inquire insanely intake ism jeopardy jumble lamentation
    lessening lettering lifelike live locality madly manifest meditate menace mention
    merchandising merrily metropolis minister minor misbehavior mischief mortal mouth
    narrative nationalism newsman notice oath occurrence omit ordain originate outcry
    overrun part particular partner pathogenic pedigree perfectly philosophy picture piteous
    police poor populate preclude proclamation prodigious profit promote psyche publicity
    pupil purse put quake quit quiver race rattler reactivity recollect recreate recruit
    reexamine refrigerator regard relish remember remonstrance rend reply responsibility
    responsiveness restive rip rivet rush sanction sarcasm satire screech scrutiny secure
    selling sensible seriously shackle shamble shipment shrill simulate skirmish slumber
    slump soberly specific spell spiral spring squeak steadfastly steep strictly stud study
    substantiate suggest sunny supply swear systematically technology territory terror
    textile thought thunder tidings toad transcend try tubing twist uncertainly underground
    ungainly ungodly unity unsteadily upkeep uptake utilize vacate valuation velocity
    vibrant vivacious vivify vocation voting wage wail warrant wing withstand workout worry
"""))
UNSAFE = _REGISTER | _SOFTWARE | _SENSE

# Nouns with no plural groups: the lexicographer files of qualities,
# feelings and substances, and other nouns seldom plural in a sense.
MASS_FILES = frozenset({"noun.attribute", "noun.feeling", "noun.substance"})
MASS = frozenset(_words("""
    alertness bulk cargo clamor din dusk effluent freight harm hurt lack lather nightfall
    pay retaliation revenge suds tumult uproar vigilance wastewater
"""))

# The topics (WordNet's domain labels) a word with a sense in is never a
# member: a text about software may mean that sense.
TECHNICAL_TOPICS = frozenset({
    "computer_science", "computing", "mathematics", "arithmetic", "geometry", "statistics",
    "logic", "electronics", "grammar", "linguistics", "physics", "chemistry", "telephone",
})

# Closed-class words, and others a context of the table may be made of:
# never members.
FUNCTION_WORDS = frozenset(_words("""
    a about above across after again against all almost alone along already also although
    always am among an and another any anyhow anyone anything anyway anywhere are around as
    at away back be because been before behind being below beneath beside besides between
    beyond both but by can cannot could did do does doing done down during each either else
    enough even ever every everyone everything everywhere except far few first for from
    further get gets getting go goes going got had has have having he her here hers herself
    him himself his how however i if in indeed inside instead into is it its itself just
    last least less let like little lot many may me might mine more most much must my myself
    near neither never next no nobody none nor not nothing now of off often on once one only
    onto or other others otherwise our ours ourselves out outside over own per perhaps
    please quite rather same second several shall she should since so some somebody someone
    something sometimes somewhat somewhere soon still such than that the their theirs them
    themselves then there therefore these they third this those though through throughout
    thus till to together too toward towards under unless until up upon us very via was way
    we well were what whatever when whenever where whereas wherever whether which while who
    whoever whole whom whose why will with within without would yes yet you your yours
    yourself yourselves
"""))

_LEXNAMES = _words(
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute "
    "noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group "
    "noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant "
    "noun.possession noun.process noun.quantity noun.relation noun.shape noun.state "
    "noun.substance noun.time verb.body verb.change verb.cognition verb.communication "
    "verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion "
    "verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
)
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
_FILES = ("cntlist.rev", "index.noun", "index.verb", "index.adj", "index.adv", "data.noun",
          "data.verb", "data.adj", "data.adv", "noun.exc", "verb.exc", "adj.exc", "adv.exc")
_WORD = re.compile(r"[a-z]+")
_CONSONANT_Y = re.compile(r"[^aeiou]y$")
_SIBILANT = re.compile(r"(s|x|z|ch|sh)$")
_VOWELS = re.compile(r"[aeiouy]+")
_SETS = re.compile(r"^@(\w+)\s*:(.*)$", re.MULTILINE)
# The context each part of speech is restricted to when a member is also
# another part of speech, by form; None where no context fixes it.
_RESTRICTED = {("verb", "base"): "verb", ("noun", "base"): "det", ("noun", "plural"): "det"}
_INSTALL_WORDNET = "apt-get install wordnet-base"
_INSTALL_NLTK = "pip install 'guardgate[keygen]' (or: pip install nltk)"


@dataclass(frozen=True, slots=True)
class Candidate:
    """A candidate group: its members (two or more), the context set it
    holds after (None: any word), its part of speech and form, and its
    frequency (the tagged uses of its members in its sense, summed)."""

    members: tuple[str, ...]
    context: str | None
    pos: str
    count: int
    form: str = "base"

    @property
    def name(self) -> str:
        """The group's name as the table's parser gives it: what the keyed choice hashes."""
        return f"{self.context or ''}:{','.join(sorted(self.members))}"

    def line(self) -> str:
        """The group's line in the table's format."""
        words = ", ".join(self.members)
        return f"{self.context}: {words}" if self.context else words


def shipped_text() -> str:
    return resources.files("guardgate.perturb.watermark").joinpath("synonyms.txt").read_text()


def shipped_sets(text: str | None = None) -> dict[str, tuple[str, ...]]:
    """The context sets of the shipped table, by name, in their order."""
    return {name: tuple(words.split()) for name, words in _SETS.findall(text or shipped_text())}


def shipped_words(text: str | None = None) -> frozenset[str]:
    """Every word of the shipped table: its groups' members, its sets'
    words, and the words of the negations and contractions."""
    text = text or shipped_text()
    members, _, _, _ = parse(text)
    words = {word for group in members for word in group}
    words.update(word for set_words in shipped_sets(text).values() for word in set_words)
    words.update(word for pair in SPELLED.values() for word in pair)
    return frozenset(words)


# -- reading WordNet --------------------------------------------------------


@contextmanager
def open_wordnet(wordnet_dir: str | os.PathLike[str]) -> Iterator[Any]:
    """nltk's WordNet reader on the WordNet 3.0 files in ``wordnet_dir``.

    nltk reads only from a root of its data path that no other account can
    write to, and needs a ``lexnames`` file Debian does not ship: the files
    are copied to a private directory (mode 0700) with that file added, and
    the copy is removed on exit. The reader would load a downloaded WordNet
    to map between versions: it is told there is none to map."""
    try:
        nltk = importlib.import_module("nltk")
        wordnet = importlib.import_module("nltk.corpus.reader.wordnet")
    except ImportError as err:
        raise PoolError(f"reading WordNet needs nltk: {_INSTALL_NLTK}") from err
    source = Path(wordnet_dir)
    missing = [name for name in _FILES if not (source / name).is_file()]
    if missing:
        raise PoolError(f"no WordNet 3.0 database in {source} (no {missing[0]}): "
                        f"{_INSTALL_WORDNET}, then --wordnet /usr/share/wordnet")

    base: Any = wordnet.WordNetCorpusReader

    class Reader(base):  # type: ignore[misc]
        def map_wn(self, version: str = "wordnet") -> None:
            return None

    private = Path(tempfile.mkdtemp(prefix="guardgate-wordnet-"))  # mode 0700
    nltk.data.path.insert(0, str(private))
    try:
        try:
            for name in _FILES:
                shutil.copyfile(source / name, private / name)
            (private / "lexnames").write_text("".join(
                f"{index:02d}\t{name}\t{_CATEGORY[name.partition('.')[0]]}\n"
                for index, name in enumerate(_LEXNAMES)))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "multilingual functions are not available"
                reader = Reader(str(private), None)
        except (OSError, ValueError, LookupError) as err:
            raise PoolError(f"cannot read WordNet in {source}: {err}") from err
        yield reader
    finally:
        if str(private) in nltk.data.path:
            nltk.data.path.remove(str(private))
        shutil.rmtree(private, ignore_errors=True)


# -- the senses of each word ------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Sense:
    """A word's dominant sense in one part of speech."""

    word: str
    pos: str
    synset: Any
    lemma: Any
    count: int  # tagged uses in this sense
    total: int  # tagged uses in this part of speech


def _pos_of(synset: Any) -> str:
    return "a" if synset.pos() == "s" else str(synset.pos())


def _usage_counts(reader: Any, word: str
                  ) -> tuple[dict[str, dict[Any, tuple[Any, int]]], set[str]]:
    """For each part of speech, the word's senses: synset -> (lemma, count);
    and the parts of speech it is an inflected form of another word in
    ("learned", "feeding", "cows")."""
    found: dict[str, dict[Any, tuple[Any, int]]] = defaultdict(dict)
    inflected: set[str] = set()
    for synset in reader.synsets(word):
        names = [lemma.name() for lemma in synset.lemmas()]
        for lemma in synset.lemmas():
            if lemma.name() == word:
                found[_pos_of(synset)][synset] = (lemma, int(lemma.count()))
        # A name ("Yank", "Cross") is neither a sense nor an inflection.
        if all(name.lower() != word for name in names):
            inflected.add(_pos_of(synset))
    return found, inflected


def _labelled(synset: Any, lemma: Any) -> list[Any]:
    """The domain labels of a sense: topics, regions and usages."""
    return [*synset.topic_domains(), *synset.region_domains(), *synset.usage_domains(),
            *lemma.topic_domains(), *lemma.region_domains(), *lemma.usage_domains()]


def _technical(senses: dict[str, dict[Any, tuple[Any, int]]]) -> bool:
    """Whether any sense of the word belongs to a technical topic."""
    return any(label.name().partition(".")[0] in TECHNICAL_TOPICS
               for by_pos in senses.values() for synset, (lemma, _) in by_pos.items()
               for label in _labelled(synset, lemma))


def _dominant(word: str, pos: str, senses: dict[str, dict[Any, tuple[Any, int]]]
              ) -> _Sense | None:
    """The word's dominant sense in ``pos``, if it has one common enough.

    Tagged counts are small, so the sense's share is judged with one more
    use granted to every other sense: a word with many senses needs more
    evidence that one of them is the rule."""
    by_synset = senses.get(pos, {})
    ranked = sorted(by_synset.items(), key=lambda item: -item[1][1])
    if not ranked:
        return None
    synset, (lemma, count) = ranked[0]
    total = sum(c for _, c in by_synset.values())
    if count < MIN_COUNT or count < MIN_SHARE * (total + len(ranked) - 1):
        return None
    return _Sense(word, pos, synset, lemma, count, total)


def _other_pos(sense: _Sense, senses: dict[str, dict[Any, tuple[Any, int]]]) -> frozenset[str]:
    """The other parts of speech the word is common in."""
    return frozenset(
        pos for pos, by_synset in senses.items()
        if pos != sense.pos
        and sum(count for _, count in by_synset.values()) >= max(1, OTHER_POS_SHARE * sense.total)
    )


def _eligible(word: str, excluded: frozenset[str]) -> bool:
    return (len(word) >= MIN_LENGTH and _WORD.fullmatch(word) is not None
            and word not in excluded)


def _senses(reader: Any, excluded: frozenset[str]
            ) -> Iterator[tuple[_Sense, frozenset[str]]]:
    """Each eligible word's dominant sense in each part of speech, and the
    other parts of speech the word is common in."""
    words = sorted({word for pos in "nvar" for word in reader.all_lemma_names(pos)
                    if _eligible(word, excluded)})
    for word in words:
        senses, inflected = _usage_counts(reader, word)
        if _technical(senses):
            continue
        for pos in "nvar":
            sense = _dominant(word, pos, senses)
            # Not an inflected form of any word ("cows", "learned", "grinning").
            if sense is not None and not inflected and not _labelled(sense.synset, sense.lemma):
                yield sense, _other_pos(sense, senses)


# -- agreement within a group -----------------------------------------------


def _usage_key(sense: _Sense) -> tuple[object, ...]:
    """What members of one group must share to be used alike: a verb's
    sentence frames, an adjective's position."""
    if sense.pos == "v":
        return tuple(sorted(sense.lemma.frame_ids()))
    if sense.pos == "a":
        return (sense.lemma.syntactic_marker(),)
    return ()


def _alike(one: str, other: str) -> bool:
    return (one in other or other in one
            or SequenceMatcher(None, one, other).ratio() >= 0.7)


def _agreeing(members: list[_Sense]) -> list[list[_Sense]]:
    """The members split by how they are used, each part of two or more.
    Of two members one of which holds the other ("lid" and "eyelid", "metal"
    and "metallic"), or spelt alike ("whiskey" and "whisky", "fella" and
    "fellow"), the less frequent is left out: a part is seldom a synonym of
    the whole, and a spelling is the text's to choose."""
    parts: dict[tuple[object, ...], list[_Sense]] = defaultdict(list)
    kept: list[_Sense] = []
    for sense in sorted(members, key=lambda s: (-s.count, s.word)):
        if not any(_alike(sense.word, other.word) for other in kept):
            kept.append(sense)
    for sense in kept:
        parts[_usage_key(sense)].append(sense)
    return [part for part in parts.values() if len(part) >= 2]


# -- inflected forms --------------------------------------------------------


def _exceptions(reader: Any, pos: str) -> dict[str, list[str]]:
    """WordNet's exception list for ``pos`` ("stopped stop"), inverted:
    base -> forms."""
    forms: dict[str, list[str]] = defaultdict(list)
    name = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}[pos]
    with reader.open(f"{name}.exc") as lines:
        for line in lines:
            form, *bases = line.split()
            for base in bases:
                forms[base].append(form)
    return forms


def _suffix_s(word: str) -> str | None:
    """The regular plural or third person."""
    if word.endswith(("o", "f", "fe")):
        return None
    if _SIBILANT.search(word):
        return word + "es"
    if _CONSONANT_Y.search(word):
        return word[:-1] + "ies"
    return word + "s"


def _regular_ing(word: str) -> str:
    if word.endswith("ie"):
        return word[:-2] + "ying"
    if word.endswith("e") and not word.endswith(("ee", "oe", "ye")):
        return word[:-1] + "ing"
    return word + "ing"


def _regular_past(word: str) -> str:
    if word.endswith("e"):
        return word + "d"
    if _CONSONANT_Y.search(word):
        return word[:-1] + "ied"
    return word + "ed"


def _verb_form(word: str, form: str, listed: list[str]) -> str | None:
    """A verb's ``form``, from its exception-list entries ``listed`` where
    they give it, by rule where it is regular, None where unsure."""
    doubled = word + word[-1]
    if doubled + "ed" in listed and len(_VOWELS.findall(word)) > 1:
        return None  # "combated" or "combatted", "traveled" or "travelled": spelling varies
    ing = [f for f in listed if f.endswith("ing")]
    irregular = [f for f in listed if f not in ing and f != doubled + "ed"]
    if form == "ing":
        return ing[0] if len(ing) == 1 else None if ing else _regular_ing(word)
    if form == "past":
        return None if irregular else doubled + "ed" if listed else _regular_past(word)
    return None if any(f.endswith("s") for f in irregular) else _suffix_s(word)


def _plural(sense: _Sense, listed: list[str]) -> str | None:
    """A noun's plural; None for a noun that seldom has one ("clarity",
    "lack", "suds") or whose plural the rules may misspell ("madmen",
    "monarchs")."""
    if (sense.synset.lexname() in MASS_FILES or sense.word in MASS
            or sense.word.endswith(("man", "ch", "ness"))):
        return None
    if listed:
        return listed[0] if len(listed) == 1 else None
    return _suffix_s(sense.word)


def _inflect(sense: _Sense, form: str, listed: list[str]) -> str | None:
    if form == "base":
        return sense.word
    if sense.pos == "v":
        return _verb_form(sense.word, form, listed)
    return _plural(sense, listed)


def _confirmed(reader: Any, form: str, base: str, pos: str) -> bool:
    """Whether WordNet reads ``form`` back as ``base`` and nothing else
    (its morphology, exception lists included), and does not list ``form``
    as a word of its own in any part of speech."""
    if form == base:
        return True
    if set(reader.synsets(form, pos)) != set(reader.synsets(base, pos)):
        return False
    return not any(lemma.name() == form for synset in reader.synsets(form)
                   for lemma in synset.lemmas())


# -- the pool ---------------------------------------------------------------


def _context(pos: str, form: str, others: frozenset[str]) -> tuple[bool, str | None]:
    """Whether a group of this form can be made of words also common in the
    parts of speech ``others``, and the word set it then holds after."""
    if not others:
        return True, None
    if pos == "v" and form in ("ing", "past"):
        # No other part of speech's form (their own entries are checked in
        # `_confirmed`).
        return True, None
    # After "the" an adjective is as likely as a noun ("the individual
    # files"), after "not" or "just" an adjective or adverb as likely as a
    # verb ("not long ago"): the sets fix a noun against a verb only.
    name = _RESTRICTED.get((POS_NAMES[pos], form))
    fixed = others <= ({"v"} if pos == "n" else {"n"})
    return (name is not None and fixed), name if fixed else None


def _groups_of(reader: Any, members: list[tuple[_Sense, frozenset[str]]],
               exceptions: dict[str, dict[str, list[str]]]) -> Iterator[Candidate]:
    """The candidate groups, one per form, of one sense's members."""
    pos = members[0][0].pos
    others = frozenset().union(*(other for _, other in members))
    for form in FORMS[POS_NAMES[pos]]:
        possible, context = _context(pos, form, others)
        if not possible:
            continue
        words = []
        for sense, _ in members:
            inflected = _inflect(sense, form, exceptions[pos].get(sense.word, []))
            if inflected is not None and _confirmed(reader, inflected, sense.word, pos):
                words.append((inflected, sense.count))
        if len(words) >= 2:
            yield Candidate(tuple(word for word, _ in words), context, POS_NAMES[pos],
                            sum(count for _, count in words), form)


def _without_conflicts(candidates: list[Candidate]) -> list[Candidate]:
    """The candidates but those sharing a word with a more frequent one: a
    word belongs to one group of a private table ("the scream" and "to
    scream" are one word to the table's loader), so that one context always
    picks one group."""
    kept: list[Candidate] = []
    taken: set[str] = set()
    for candidate in sorted(candidates, key=lambda c: (-c.count, c.name)):
        if taken.isdisjoint(candidate.members):
            kept.append(candidate)
            taken.update(candidate.members)
    return sorted(kept, key=lambda c: (c.pos, FORMS[c.pos].index(c.form), c.name))


def groups_from(reader: Any, excluded: Iterable[str] = ()) -> list[Candidate]:
    """The candidate groups of an open WordNet reader (see `open_wordnet`)."""
    shut_out = (frozenset(excluded) | shipped_words() | TECHNICAL | FUNCTION_WORDS
                | UNSAFE)
    by_synset: dict[Any, list[tuple[_Sense, frozenset[str]]]] = defaultdict(list)
    for sense, others in _senses(reader, shut_out):
        by_synset[sense.synset].append((sense, others))
    exceptions = {pos: _exceptions(reader, pos) for pos in "nvar"}
    found: list[Candidate] = []
    for members in by_synset.values():
        if len(members) < 2:
            continue
        for part in _agreeing([sense for sense, _ in members]):
            chosen = [(sense, others) for sense, others in members if sense in part]
            found.extend(_groups_of(reader, chosen, exceptions))
    return _without_conflicts(found)


def candidate_groups(wordnet_dir: str | os.PathLike[str] = "/usr/share/wordnet",
                     excluded: Iterable[str] = ()) -> list[Candidate]:
    """The candidate groups WordNet 3.0 in ``wordnet_dir`` offers (Debian's
    ``wordnet-base`` installs it in /usr/share/wordnet), none with a word
    of the shipped table or of ``excluded``. Raises `PoolError` when nltk
    or WordNet is missing."""
    with open_wordnet(wordnet_dir) as reader:
        return groups_from(reader, excluded)


# -- a deployment's private table --------------------------------------------


def _rank(key: bytes, candidate: Candidate) -> bytes:
    return hmac.new(key, candidate.name.encode(), hashlib.sha256).digest()


def select(key: bytes, candidates: Iterable[Candidate], count: int) -> list[Candidate]:
    """The ``count`` candidates the key selects: those whose names' keyed
    hashes (HMAC-SHA256) are lowest."""
    if count < 0:
        raise ValueError("count must not be negative")
    unique = {candidate.name: candidate for candidate in candidates}
    return sorted(unique.values(), key=lambda candidate: _rank(key, candidate))[:count]


def private_table(key: bytes, candidates: Iterable[Candidate], count: int) -> str:
    """The ``count`` candidates the key selects, as a table in the format of
    ``synonyms.txt`` (with the word sets it uses, as the shipped table
    defines them), which `guardgate.perturb.watermark.table.parse` reads.
    Candidates with a word the shipped table has are passed over (a pool
    built before the table was edited); ValueError when fewer than
    ``count`` remain."""
    shipped = shipped_words()
    usable = [c for c in candidates if not shipped.intersection(c.members)]
    chosen = select(key, usable, count)
    if len(chosen) < count:
        raise ValueError(f"{count} groups asked for, the pool has {len(chosen)}")
    sets = shipped_sets()
    lines = [
        "# guardgate watermark: a deployment's private synonym groups, chosen by its key",
        "# from a candidate pool (guardgate watermark keygen). Keep it out of the image,",
        "# like the key. Format as in guardgate/perturb/watermark/synonyms.txt.",
    ]
    for name in sorted({c.context for c in chosen if c.context}):
        if name not in sets:
            raise ValueError(f"context set @{name} is not defined by the shipped table")
        lines.append(f"@{name}: {' '.join(sets[name])}")
    order = sorted(chosen, key=lambda c: (c.context or "", c.pos, FORMS[c.pos].index(c.form),
                                          c.name))
    heading = None
    for candidate in order:
        title = f"{candidate.pos}, {candidate.form}" + (
            f", after @{candidate.context}" if candidate.context else "")
        if title != heading:
            lines.append(f"# {title}")
            heading = title
        lines.append(candidate.line())
    return "\n".join(lines) + "\n"
