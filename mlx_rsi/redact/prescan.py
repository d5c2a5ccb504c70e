"""The session pre-scan: one pass that tells each text which stages it needs.

A session's texts are joined and searched once for every rule anchor, secret
keyword, home/owner marker and number shape; each text then runs only the stages
whose necessary condition it meets, and most run none. Every shortcut is a
necessary condition, so the output equals running every stage on every text
(``tests/test_redact_equivalence.py``).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate, count, repeat
from operator import add
from typing import NamedTuple

from mlx_rsi.redact.keyed import ASSIGNMENT_AT, KEYWORDS
from mlx_rsi.redact.literals import FOLD_BYTES, fold, multi_finder, texts_at, texts_holding
from mlx_rsi.redact.pii import NUMBER_NEEDLES, OWNER_MARKERS, home_users

# (anchor, its regex when written "re:…", indexes of the rules it gates)
Check = tuple[str, "re.Pattern[str] | None", tuple[int, ...]]


def anchor_present(check: Check, text: str) -> bool:
    anchor, gate, _ = check
    return gate.search(text) is not None if gate is not None else anchor in text


SHORT_ANCHOR = 2  # anchors this short are searched exactly, not in the lower-cased pass


# Lower-cased markers gating the home-path stage (a superset of what ``redact_homes`` checks).
_HOME_MARKERS = ("/home/", "users", "documents and settings", "-home-")


class Hints(NamedTuple):
    """What the session pre-scan found in one text (a text without any has None)."""

    checks: tuple[Check, ...]  # anchored rules whose anchor is in the text
    assignments: tuple[int, ...]  # where "keyword … =" starts, in text.lower()
    base64: bool  # may hold a run of base64_min_chars base64 characters
    homes: bool  # holds a home-path marker
    low: str | None = None  # text.lower(), when the pre-scan has it
    numbers: bool = False  # holds a digit run shaped like a card or phone number
    owners: bool = False  # holds an ls -l permission string or chown/chgrp


class SessionScan:
    """One multi-literal pass over a whole session to tell each text's work.

    The session's texts are joined with newlines and folded to ASCII bytes (a
    non-ASCII character becomes "?", so offsets stay character offsets; letters
    lower-cased, digits "0"); one Aho-Corasick search finds every secret keyword,
    every folded rule anchor, every home and owner marker and every number shape,
    and each hit is mapped back to its text. A keyword counts only where an
    assignment starts (``ASSIGNMENT`` within the line, the test candidate lines
    must pass; in a non-ASCII text every keyword counts); a folded anchor hit is
    confirmed with the exact anchor in that text, and anchors of one or two
    characters are searched as they are. Base64 runs are found by sampling: a run
    of ``n`` base64 characters covers a whole piece of ``n // 2`` starting at a
    multiple of ``n // 2``, so only those pieces are tested. All of these are
    necessary conditions: a text without them cannot change in the stage they gate,
    and a text with them runs that stage.
    """

    def __init__(self, anchors: Sequence[Check], base64_min_chars: int) -> None:
        # Two automatons: one large one grows slow (past about a hundred patterns).
        numbers = [n.decode() for n in NUMBER_NEEDLES]
        markers = list(dict.fromkeys((*KEYWORDS, *_HOME_MARKERS, *OWNER_MARKERS, *numbers)))
        self.keyword = [p in KEYWORDS for p in markers]
        self.home = [p in _HOME_MARKERS for p in markers]
        self.owner = [p in OWNER_MARKERS for p in markers]
        self.number = [p in numbers for p in markers]
        self.find = multi_finder(markers)
        by_pattern: dict[str, list[Check]] = {}
        self.always: list[Check] = []  # "re:", empty or non-ASCII anchors: every text
        self.exact: list[Check] = []  # anchors of one or two characters: case-sensitive
        for check in anchors:
            anchor, gate, _ = check
            if gate is not None or not anchor or not anchor.isascii() or "?" in anchor:
                self.always.append(check)
            elif len(anchor) <= SHORT_ANCHOR:
                self.exact.append(check)
            else:
                by_pattern.setdefault(fold(anchor), []).append(check)
        self.checks = [tuple(checks) for checks in by_pattern.values()]
        self.find_anchors = multi_finder(list(by_pattern))
        self.find_exact = multi_finder([c[0] for c in self.exact]) if self.exact else None
        self.half = max(1, base64_min_chars // 2)
        self.piece = re.compile(f"[A-Za-z0-9+/]{{{self.half}}}")

    def hints(
        self, texts: Sequence[str], *, emails: bool, usernames: Sequence[str]
    ) -> tuple[list[Hints | None], tuple[str, ...]] | None:
        """Per text its hints (None: nothing to do), and the home-folder users the
        texts name (:func:`home_users`); None when offsets cannot be trusted."""
        joined = "\n".join(texts)
        if not joined.isascii() and any(c in joined for c in _LOWER_TO_ASCII):
            return None  # lower-casing makes ASCII of these: scan text by text
        data = joined.encode("ascii", "replace")
        folded = data.translate(FOLD_BYTES)
        # text i starts at offsets[i]: the lengths before it, plus one newline each
        offsets = list(map(add, accumulate(map(len, texts), initial=0), count()))
        plain = None if joined.isascii() else [t.isascii() for t in texts]
        assignments, homes, owners, numbers = self._literals(folded, offsets, plain)
        lowered: dict[int, set[int]] = {}
        for pattern, start, _ in self.find_anchors(folded):
            lowered.setdefault(bisect_right(offsets, start) - 1, set()).add(pattern)
        if self.find_exact is not None:
            for pattern, start, _ in self.find_exact(data):
                index = bisect_right(offsets, start) - 1
                lowered.setdefault(index, set()).add(-1 - pattern)
        samples = range(0, len(joined), self.half)
        pieces = filter(None, map(self.piece.match, repeat(joined), samples))
        base64 = {bisect_right(offsets, m.start()) - 1 for m in pieces}
        learned = home_users([texts[i] for i in sorted(homes)])
        names = [*(["@"] if emails else []), *usernames, *learned]
        other = texts_holding(joined, offsets, names)
        out: list[Hints | None] = [None] * len(texts)
        if self.always:
            busy = set(range(len(texts)))
        else:
            for index in other:
                out[index] = _LAST_STAGES_ONLY
            busy = set(assignments) | set(lowered) | base64 | homes | owners | numbers
        for index in busy:
            text = texts[index]
            present = [c for p in lowered.get(index, ()) for c in self._checks(p) if c[0] in text]
            if self.always:
                present.extend(c for c in self.always if anchor_present(c, text))
            at = assignments.get(index, ())
            low = None
            if at and (plain is None or plain[index]):
                low = folded[offsets[index] : offsets[index + 1] - 1].decode("ascii")
            hints = Hints(
                tuple(present),
                tuple(at),
                base64=index in base64,
                homes=index in homes,
                low=low,
                numbers=index in numbers,
                owners=index in owners,
            )
            if any(hints) or index in other:
                out[index] = hints
        return out, learned

    def _checks(self, pattern: int) -> Sequence[Check]:
        """The checks of an automaton pattern, or (negative) of an exact anchor."""
        return self.checks[pattern] if pattern >= 0 else (self.exact[-1 - pattern],)

    def _literals(
        self, folded: bytes, offsets: list[int], plain: list[bool] | None
    ) -> tuple[dict[int, list[int]], set[int], set[int], set[int]]:
        """Per text: where assignments start; which texts hold home markers, owner
        markers (``ls -l``, ``chown``), number shapes."""
        hits = self.find(folded)
        keyword, home, owner, number = self.keyword, self.home, self.owner, self.number
        match = ASSIGNMENT_AT.match
        assignments: dict[int, list[int]] = {}
        if plain is None:  # all ASCII: the folded bytes tell where assignments are
            starts = [s for p, s, _ in hits if keyword[p] and match(folded, s) is not None]
        else:  # in a non-ASCII text every keyword counts (its text tells)
            starts = [s for p, s, _ in hits if keyword[p]]
        for start in starts:
            index = bisect_right(offsets, start) - 1
            if plain is not None and plain[index] and match(folded, start) is None:
                continue
            assignments.setdefault(index, []).append(start - offsets[index])
        homes = texts_at([hit for hit in hits if home[hit[0]]], offsets)
        owners = texts_at([hit for hit in hits if owner[hit[0]]], offsets)
        numbers = texts_at([hit for hit in hits if number[hit[0]]], offsets)
        return assignments, homes, owners, numbers


# Non-ASCII characters whose lower case is (or starts with) an ASCII letter.
_LOWER_TO_ASCII = ("\u212a", "\u0130")


_LAST_STAGES_ONLY = Hints((), (), base64=False, homes=False)  # "@" or a user name
