"""Multi-literal search over a folded byte view of text (Aho-Corasick).

Folding (ASCII lower case, digits to "0", other characters "?") keeps character
offsets, so a hit maps back to its place in the original text; one pass finds every
anchor, keyword, marker and number shape of a whole session.
"""

from __future__ import annotations

import functools
from bisect import bisect_right
from collections.abc import Callable, Sequence

Hits = list[tuple[int, int, int]]  # (pattern index, start, end)


def multi_finder(patterns: Sequence[str], *, overlapping: bool = True) -> Callable[[bytes], Hits]:
    """Every occurrence of every pattern (ASCII) in a byte string, in order of their
    ends (``overlapping``: also those inside or across another): one Aho-Corasick
    pass with ``ahocorasick_rs``, else one ``find`` pass per pattern (all hits)."""
    encoded = [p.encode("ascii") for p in patterns]
    try:
        import ahocorasick_rs  # optional speed-up: without it, one find per pattern
    except ImportError:
        return functools.partial(_find_each, encoded)
    automaton = ahocorasick_rs.BytesAhoCorasick(encoded)
    return functools.partial(automaton.find_matches_as_indexes, overlapping=overlapping)


def fold(text: str) -> str:
    """An ASCII text as the session pre-scan searches it: lower case, digits "0"."""
    return text.encode("ascii").translate(FOLD_BYTES).decode("ascii")


def fold_text(text: str) -> bytes:
    """Any text folded (non-ASCII characters "?", one byte each: offsets stay)."""
    return text.encode("ascii", "replace").translate(FOLD_BYTES)


def _find_each(patterns: list[bytes], text: bytes) -> Hits:
    hits = []
    for index, pattern in enumerate(patterns):
        position = text.find(pattern)
        while position != -1:
            hits.append((index, position, position + len(pattern)))
            position = text.find(pattern, position + 1)
    return sorted(hits, key=lambda hit: hit[2])


def texts_at(hits: Hits, offsets: list[int]) -> set[int]:
    """Indexes of the texts (starting at ``offsets``) holding a hit (hits in order)."""
    out: set[int] = set()
    next_start = -1
    for _, start, _ in hits:
        if start < next_start:
            continue  # this text is already in
        index = bisect_right(offsets, start) - 1
        out.add(index)
        next_start = offsets[index + 1]
    return out


FOLD_BYTES = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ123456789", b"abcdefghijklmnopqrstuvwxyz000000000"
)


def texts_holding(joined: str, offsets: list[int], needles: Sequence[str]) -> set[int]:
    """Indexes of the texts (joined with newlines, starting at ``offsets``) holding a needle."""
    out: set[int] = set()
    for needle in needles:
        if not needle or "\n" in needle:  # in every text, or may span two: ask each text
            out.update(i for i in range(len(offsets) - 1) if needle in _text_at(joined, offsets, i))
            continue
        position = joined.find(needle)
        while position != -1:
            index = bisect_right(offsets, position) - 1
            out.add(index)
            position = joined.find(needle, offsets[index + 1])
    return out


def _text_at(joined: str, offsets: list[int], index: int) -> str:
    return joined[offsets[index] : offsets[index + 1] - 1]
