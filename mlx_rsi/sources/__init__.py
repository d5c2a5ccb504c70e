"""Session-log readers, one module per format, found through a lazy registry.

Each reader module exposes a module-level ``READER`` object satisfying
:class:`SourceReader`. The registry maps a format name to ``"module:attribute"``
so that listing formats imports nothing heavy, and a typo gets a "did you mean".

The incremental contract (``mlx_rsi.ingest`` relies on it):

- ``read(path, start, carry)`` returns the sessions read from byte ``start`` on,
  each message with a ``key`` that is stable for that record of that file.
- ``end_offset`` is where the next pass starts. A reader may stop *before* the end
  of what it parsed (e.g. at the start of the last turn) so that the next pass
  re-reads that turn: a split message can then be merged whole, and a signal found
  in the next turn (a correction, a rejection) reaches the answer it is about.
  Re-emitted messages keep their keys, so storing them again is an upsert.
- A pass from ``start > 0`` must emit, for the window it re-reads, every key the
  previous pass emitted from that window (or return ``replace=True``).
- ``replace=True`` says the result is the file's whole content (a JSON document,
  or a log whose history was rewound): ingest first drops what it stored from
  that file before.
"""

from __future__ import annotations

import difflib
import importlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mlx_rsi.errors import UsageError
from mlx_rsi.records import Session

# How many bytes of a file's head ``detect`` gets to look at.
HEAD_BYTES = 64 * 1024
# A detection this confident ends the search (formats are tried in name order).
SURE = 0.95
# How far detection reads past a first line longer than the head to find lines that fit.
DETECT_SCAN_BYTES = 256 * 1024 * 1024


@dataclass
class ReadResult:
    """What one pass over a file produced.

    ``sessions`` hold the messages read in this pass (each message with a stable
    ``key``); the store upserts them by (session id, key), so a message read twice
    is stored once. ``end_offset`` is the byte offset the next pass starts from.
    ``carry`` is the reader's own JSON-serializable state to resume from there.
    ``skipped`` counts records passed over, by reason.
    """

    sessions: list[Session]
    end_offset: int
    carry: dict[str, Any] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> count
    replace: bool = False  # the result is the whole file: drop what was stored from it
    # what a file without conversation held, when it is known (e.g. "agent metadata")
    note: str = ""


@dataclass(frozen=True)
class ReadOptions:
    """Limits every reader honours (from the ``sources`` config section)."""

    max_line_bytes: int = 32 * 1024 * 1024  # a longer line is skipped as "line_too_long"
    max_document_bytes: int = 1024 * 1024 * 1024  # a bigger JSON document: "too_large"


class SourceReader(Protocol):
    name: str

    def detect(self, path: Path, head: bytes) -> float:
        """Confidence 0..1 that the file is in this format, judged by its content."""
        ...

    def read(
        self,
        path: Path,
        start: int = 0,
        carry: dict[str, Any] | None = None,
        options: ReadOptions | None = None,
    ) -> ReadResult:
        """Read the file from byte ``start`` (with ``carry`` from the previous pass)."""
        ...


# name -> "module:attribute"; modules are imported only when a format is used.
REGISTRY: dict[str, str] = {
    "aider": "mlx_rsi.sources.aider:READER",
    "alpaca": "mlx_rsi.sources.alpaca:READER",
    "atif": "mlx_rsi.sources.atif:READER",
    "chatgpt": "mlx_rsi.sources.chatgpt:READER",
    "claude_code": "mlx_rsi.sources.claude_code:READER",
    "codex": "mlx_rsi.sources.codex:READER",
    "collector": "mlx_rsi.sources.collector:READER",
    "completions": "mlx_rsi.sources.completions:READER",
    "gemini": "mlx_rsi.sources.gemini:READER",
    "openai": "mlx_rsi.sources.openai:READER",
    "sharegpt": "mlx_rsi.sources.sharegpt:READER",
}


def format_names() -> list[str]:
    return sorted(REGISTRY)


def get_reader(name: str) -> SourceReader:
    target = REGISTRY.get(name)
    if target is None:
        close = difflib.get_close_matches(name, REGISTRY, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(format_names())}"
        raise UsageError(f"unknown session format '{name}'", hint=hint)
    module_name, attribute = target.split(":")
    reader: SourceReader = getattr(importlib.import_module(module_name), attribute)
    return reader


def read_head(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(HEAD_BYTES)


def detect_format(path: Path, head: bytes | None = None) -> str | None:
    """The best-matching format for a file by content, or None when none fits.

    A first line longer than the head (a huge pasted output, a line over
    ``max_line_bytes`` that the reader will skip) hides the format: the file is then
    judged by the first lines that fit (:func:`fitting_head`).
    """
    head = read_head(path) if head is None else head
    found = _best_format(path, head)
    if found is None and _first_line_overflows(head):
        fitting = fitting_head(path)
        if fitting:
            found = _best_format(path, fitting)
    return found


def _first_line_overflows(head: bytes) -> bool:
    return len(head) >= HEAD_BYTES and b"\n" not in head


def fitting_head(path: Path, limit: int = HEAD_BYTES, scan: int = DETECT_SCAN_BYTES) -> bytes:
    """Up to ``limit`` bytes of the file's first whole lines no longer than ``limit``.

    Longer lines are passed over; at most ``scan`` bytes are read to find them.
    """
    kept: list[bytes] = []
    size = 0
    for line in _lines(path, limit, scan):
        kept.append(line)
        size += len(line)
        if size >= limit:
            break
    return b"".join(kept)[:limit]


def _lines(path: Path, limit: int, scan: int) -> Iterator[bytes]:
    """Whole lines (with their newline) of at most ``limit`` bytes, longer ones skipped."""
    pending = b""
    too_long = False  # the line being read already passed ``limit``: drop it
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            pending += chunk
            while (end := pending.find(b"\n")) >= 0:
                line, pending = pending[: end + 1], pending[end + 1 :]
                if not too_long and len(line) <= limit:
                    yield line
                too_long = False
            if len(pending) > limit:
                pending, too_long = b"", True
            scan -= len(chunk)
            if scan <= 0:
                return
    if pending and not too_long:
        yield pending


def _best_format(path: Path, head: bytes) -> str | None:
    best, best_score = None, 0.0
    for name in format_names():
        score = get_reader(name).detect(path, head)
        if score > best_score:
            best, best_score = name, score
        if best_score >= SURE:
            break
    return best if best_score >= 0.5 else None
