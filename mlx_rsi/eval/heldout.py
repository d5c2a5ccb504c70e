"""The held-out suite: test cases built from the user's own held-out sessions.

Users will not hand-write tests, but their logs already say what a good answer
looks like. For each successful request of a *test-split* session (whole sessions
are held out by ``mlx_rsi.dataset``; nothing here is ever trained on):

- ``expected``: the ``eval.heldout_phrases`` most distinctive items of the accepted
  answer. First the commands it uses (the leading words of a backticked span,
  ``orcactl db reset`` of ``orcactl db reset --force``), when the training answers
  use that command too and the request does not spell it: which command does a task
  is what a person's sessions teach, and a model that only echoes the request never
  writes it. Then words — not stop words, not words of the request (echoing the question must
  not pass), not redaction placeholders. A word scores for being code (inside
  backticks), for looking like an identifier (``TIDEPOOL_TOKEN``, ``q4_k_m``,
  ``docs/handbook``), for being the user's vocabulary (the training answers use
  it too: learnable, not one-off noise) and, a little, for rarity across all
  answers (inverse document frequency); ties go to the earlier word. Only
  strong words (code, identifier or vocabulary) are required beyond the first:
  a generic second word would fail good answers by chance. Only words the
  training answers use are expected: a command that appears nowhere in the data
  the model is trained on cannot be learned from it, so a case built on it would
  measure the luck of the guess, not the cycle (such requests are skipped and
  counted as ``untaught``);
- ``must_not_contain``: for answers the user rejected or corrected on a similar
  request (the corrected answer kept as context in the example, or a low-scored
  turn whose request shares at least ``SIMILAR`` of its content words), the most
  distinctive phrase of the rejected answer that the accepted one does not use.

Requests that are near-duplicates of a training request, or whose request and
answer together nearly repeat a training example (the same question asked again
in another session), are skipped: a held-out case must not be answerable by
memorizing one training example. Words are counted over distinct answers. The result
is deterministic (sorted, no randomness) and stored as
``datasets/vX/heldout-suite.yaml`` with the dataset.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from mlx_rsi.eval.suites import Assertion, Case, Suite

HELDOUT_SUITE = "heldout-suite.yaml"
SIMILAR = 0.34  # content-word Jaccard of two requests that ask for the same thing
NEAR_DUPLICATE = 0.8  # content-word Jaccard with a training request: not held out
NEAR_DUPLICATE_EXAMPLE = 0.85  # word Jaccard of request + answer with a training example
MIN_WORD = 4  # shorter words are rarely distinctive
STRONG = 2.0  # code, identifier or the user's vocabulary: a word worth requiring
COMMON = 0.25  # a word in more than this share of all answers is not distinctive
MIN_DOCUMENTS = 8  # below this many answers, shares say nothing
_WORD = re.compile(r"[a-z0-9][a-z0-9_.\-/+#]*[a-z0-9+#]|[a-z0-9]")

_STOP_TEXT = """
    a about above after again against all also always am an and any are aren't as at
    be because been before being below between both but by can cannot could couldn't
    did didn't do does doesn't doing don't down during each either else even ever every
    few first for from further get gets getting give given go goes going got had hasn't
    has have haven't having he her here hers herself him himself his how however i if in
    into is isn't it it's its itself just keep keeps know last least less let like likely
    make makes making many may me might more most much must my myself need needs never new
    next no nor not now of off often on once one only or other others our ours ourselves
    out over own per please put rather really right same say see set should shouldn't show
    simply since so some something still such sure take than that that's the their theirs
    them themselves then there there's these they thing things this those though through
    thus to too try under until up upon us use used uses using very via want was wasn't way
    we well were weren't what when where whether which while who whom why will with within
    without won't would wouldn't yes yet you your yours yourself yourselves able add also
    answer another around back better call called case change check done each example
    first found help here instead it'll let's look lot made mean means name note ok okay
    part point run runs sure tell there thing time two want work works
    """
STOP_WORDS = frozenset(_STOP_TEXT.split())


@dataclass(frozen=True)
class Answered:
    """A request and the assistant's answer text (the trained reply)."""

    request: str
    answer: str
    rejected: tuple[str, ...] = ()  # earlier answers in the same example that were corrected


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def content_words(text: str) -> set[str]:
    return {w for w in words(text) if w not in STOP_WORDS and len(w) >= 2}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def from_record(record: dict[str, Any]) -> Answered | None:
    """The last request of a chat record, its trained answer and corrected earlier answers."""
    messages = record.get("messages") or []
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    if not users:
        return None
    last = users[-1]
    answer = " ".join(
        str(m.get("content") or "")
        for m in messages[last + 1 :]
        if m.get("role") == "assistant" and str(m.get("content") or "").strip()
    ).strip()
    if not answer:
        return None
    rejected = tuple(
        str(m.get("content") or "")
        for m in messages[:last]
        if m.get("role") == "assistant" and str(m.get("content") or "").strip()
    )
    return Answered(str(messages[last].get("content") or "").strip(), answer, rejected)


class NearDuplicates:
    """The held-out rule: does a request (or request + answer) nearly repeat one of these?

    One rule in both directions: held-out requests that repeat training data make no case,
    and a comparison that trains on other data (scripts/bench_quality.py) drops training
    records that repeat a held-out request, so no row is judged on what it memorized.
    """

    def __init__(self, answered: Iterable[Answered]) -> None:
        items = list(answered)
        self._requests = [content_words(a.request) for a in items]
        self._examples = [set(words(f"{a.request} {a.answer}")) for a in items]

    def __contains__(self, item: Answered) -> bool:
        asked = content_words(item.request)
        whole = set(words(f"{item.request} {item.answer}"))
        return any(jaccard(asked, other) >= NEAR_DUPLICATE for other in self._requests) or any(
            jaccard(whole, other) >= NEAR_DUPLICATE_EXAMPLE for other in self._examples
        )


class _Rarity:
    """Document frequencies over all answers (accepted and rejected)."""

    def __init__(self, documents: Iterable[str], taught: Iterable[str]) -> None:
        self.df: Counter[str] = Counter()
        self.n = 0
        self.texts: list[str] = []
        for doc in documents:
            self.n += 1
            self.df.update(set(words(doc)))
            self.texts.append(doc.lower())
        self.taught: Counter[str] = Counter()  # in how many training answers a word is
        self.taught_texts: list[str] = []
        for doc in taught:
            self.taught.update(set(words(doc)))
            self.taught_texts.append(doc.lower())

    def phrase_taught(self, phrase: str) -> bool:
        return any(phrase in text for text in self.taught_texts)

    def phrase_share(self, phrase: str) -> float:
        if self.n < MIN_DOCUMENTS:
            return 0.0
        return sum(phrase in text for text in self.texts) / self.n

    def share(self, term: str) -> float:
        """The fraction of answers that use ``term``."""
        return self.df[term] / self.n if self.n >= MIN_DOCUMENTS else 0.0

    def idf(self, term: str) -> float:
        return math.log((1 + self.n) / (1 + self.df[term])) + 1.0


_COMMAND_WORD = re.compile(r"^[a-z][a-z0-9_.-]*$")  # a command or subcommand, not --flag
MAX_COMMAND_WORDS = 3
_PLACEHOLDER = re.compile(r"<[A-Za-z_][A-Za-z0-9_-]*(?::[A-Za-z0-9_]+)?>")  # <SECRET:x>, <trace-id>
_CODE = re.compile(r"`([^`]+)`")
_IDENTIFIER = re.compile(r"[_./\-0-9]|[a-z][A-Z]|^[A-Z]{3,}")


def _clean(text: str) -> str:
    return _PLACEHOLDER.sub(" ", text)


def command_phrases(answer: str, request: str, rarity: _Rarity) -> list[str]:
    """The taught commands of ``answer``'s code spans that the request does not spell."""
    asked = " ".join(words(request))
    found: list[str] = []
    for span in _CODE.findall(_clean(answer)):
        leading: list[str] = []
        for token in span.split():
            if not _COMMAND_WORD.match(token) or len(leading) == MAX_COMMAND_WORDS:
                break
            leading.append(token)
        phrase = " ".join(leading)
        if len(leading) < 2 or phrase in found or phrase in asked:
            continue
        if rarity.phrase_taught(phrase) and rarity.phrase_share(phrase) <= COMMON:
            found.append(phrase)
    return found


def distinctive_words(answer: str, request: str, rarity: _Rarity, k: int) -> list[str]:
    """The ``k`` most distinctive items of ``answer``: commands, then words (module doc)."""
    commands = command_phrases(answer, request, rarity)[:k]
    in_commands = {w for c in commands for w in words(c)}
    rest = [w for w in _distinctive(answer, request, rarity, k) if w not in in_commands]
    return (commands + rest)[:k] if commands else rest


def _distinctive(answer: str, request: str, rarity: _Rarity, k: int) -> list[str]:
    answer = _clean(answer)
    asked = set(words(request))
    code = {w for span in _CODE.findall(answer) for w in words(span)}
    identifiers = {t.lower() for t in re.findall(r"\S+", answer) if _IDENTIFIER.search(t)}
    identifiers = {w for t in identifiers for w in words(t)}
    order: dict[str, int] = {}
    for position, word in enumerate(words(answer)):
        if word in STOP_WORDS or word in asked or len(word) < MIN_WORD or word in order:
            continue
        if word.replace(".", "").isdigit() and len(word) < 4:
            continue
        if rarity.share(word) > COMMON:  # "tidepool" in every answer tells nothing apart
            continue
        order[word] = position
    top_idf = max((rarity.idf(w) for w in order), default=1.0)

    def score(word: str) -> float:
        value = 2.0 * (word in code) + 1.5 * (
            word in identifiers and _IDENTIFIER.search(word) is not None
        )
        value += 1.0 * (rarity.taught[word] > 0 and rarity.df[word] <= rarity.n / 2)
        return round(value + 0.5 * rarity.idf(word) / top_idf, 6)

    ranked = sorted((w for w in order if rarity.taught[w] > 0), key=lambda w: (-score(w), order[w]))
    strong = [w for w in ranked if score(w) >= STRONG]
    return strong[:k] or ranked[:1]


def banned_phrase(rejected: str, accepted: str, request: str, rarity: _Rarity) -> str | None:
    """The most distinctive phrase of a rejected answer that the accepted one lacks."""
    allowed = set(words(accepted)) | set(words(request))
    text = " ".join(_clean(rejected).lower().split())
    tokens = words(text)
    pairs = [
        f"{a} {b}"
        for a, b in itertools.pairwise(tokens)
        if a not in STOP_WORDS
        and b not in STOP_WORDS
        and not {a, b} <= allowed
        and len(a) >= 3
        and len(b) >= 3
        and f"{a} {b}" in text  # checked as written: "sync --token" is not "sync token"
    ]
    if pairs:
        return max(
            pairs,
            key=lambda p: (sum(rarity.idf(w) for w in p.split()), -tokens.index(p.split()[0])),
        )
    singles = [t for t in tokens if t not in STOP_WORDS and t not in allowed and len(t) >= 5]
    if singles:
        return max(singles, key=lambda t: (rarity.idf(t), -tokens.index(t)))
    return None


def build_heldout_suite(
    held_out: Sequence[dict[str, Any]],
    *,
    training: Sequence[dict[str, Any]],
    rejected: Sequence[tuple[str, str]],
    categorize: Callable[[str], str],
    phrases: int = 2,
    name: str = "heldout",
    skipped: Counter[str] | None = None,
) -> Suite | None:
    """The suite for ``held_out`` records (None when no case can be made).

    ``skipped`` (when given) counts the requests that made no case, by reason:
    ``near_duplicate`` of a training example, or ``untaught`` (no distinctive word of
    the accepted answer occurs in the training answers).
    """
    skipped = Counter() if skipped is None else skipped
    cases_from = [a for a in (from_record(r) for r in held_out) if a is not None]
    train = [a for a in (from_record(r) for r in training) if a is not None]
    seen = NearDuplicates(train)
    accepted = sorted({" ".join(words(a.answer)): a.answer for a in [*cases_from, *train]}.values())
    taught = sorted({" ".join(words(a.answer)): a.answer for a in train}.values())
    rarity = _Rarity(accepted + [r[1] for r in rejected], taught)
    cases: dict[str, Case] = {}
    for item in cases_from:
        if item in seen:
            skipped["near_duplicate"] += 1
            continue
        case = _case(item, rejected, rarity, categorize, phrases)
        if case is None:
            skipped["untaught"] += 1
        else:
            cases.setdefault(case.id, case)
    if not cases:
        return None
    ordered = tuple(cases[k] for k in sorted(cases))
    return Suite(name, "primary", ordered, "held-out sessions")


def _case(
    item: Answered,
    rejected: Sequence[tuple[str, str]],
    rarity: _Rarity,
    categorize: Callable[[str], str],
    phrases: int,
) -> Case | None:
    expected = distinctive_words(item.answer, item.request, rarity, phrases)
    if not expected:
        return None
    asserts = [Assertion("icontains-all", tuple(expected))]
    bad_answers = list(item.rejected) + [
        answer
        for request, answer in rejected
        if jaccard(content_words(request), content_words(item.request)) >= SIMILAR
    ]
    banned: list[str] = []
    for bad in bad_answers:
        phrase = banned_phrase(bad, item.answer, item.request, rarity)
        if phrase and phrase not in banned and not any(phrase in e for e in expected):
            banned.append(phrase)
    asserts += [Assertion("not-icontains", p) for p in sorted(banned)[:2]]
    digest = hashlib.sha256(item.request.encode()).hexdigest()[:10]
    return Case(f"heldout-{digest}", item.request, categorize(item.request), tuple(asserts))


# --------------------------------------------------------------------------- dataset side


def rejected_answers(sessions: Iterable[Any], cfg: Any) -> list[tuple[str, str]]:
    """(request, answer) of every turn scored below ``curate.threshold`` (rejected,
    corrected, failed), from stored sessions."""
    from mlx_rsi.curate.examples import session_examples
    from mlx_rsi.curate.score import score_signals

    out = []
    for session in sessions:
        for example in session_examples(session, cfg.curate, Counter()):
            if score_signals(example.signals, cfg.curate.score_rules) >= cfg.curate.threshold:
                continue
            item = from_record({"messages": example.messages})
            if item is not None:
                out.append((item.request, item.answer))
    return sorted(out)


def write_for_dataset(
    folder: Any,
    cfg: Any,
    *,
    held_out: Sequence[dict[str, Any]],
    training: Sequence[dict[str, Any]],
    rejected: Sequence[tuple[str, str]],
) -> dict[str, Any]:
    """Write ``folder/heldout-suite.yaml``; the manifest entry describing it."""
    import hashlib as _hashlib

    from mlx_rsi.curate.categorize import compile_categories
    from mlx_rsi.eval.suites import write_suite

    categorizer = compile_categories(cfg.curate.categories)
    skipped: Counter[str] = Counter()
    suite = build_heldout_suite(
        held_out,
        training=training,
        rejected=rejected,
        categorize=categorizer.category,
        phrases=cfg.eval.heldout_phrases,
        skipped=skipped,
    )
    skips = dict(sorted(skipped.items()))
    if suite is None:
        return {"file": None, "cases": 0, "categories": {}, "skipped": skips}
    path = folder / HELDOUT_SUITE
    write_suite(path, suite)
    return {
        "file": HELDOUT_SUITE,
        "cases": len(suite.cases),
        "must_not": sum(any(a.negated for a in c.asserts) for c in suite.cases),
        "categories": dict(sorted(Counter(c.category for c in suite.cases).items())),
        "skipped": skips,
        "sha256": _hashlib.sha256(path.read_bytes()).hexdigest(),
    }
