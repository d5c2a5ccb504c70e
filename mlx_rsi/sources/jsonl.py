"""Fast, fault-tolerant JSON-lines iteration shared by the line-based readers."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

CHUNK_BYTES = 4 * 1024 * 1024
UTF8_BOM = b"\xef\xbb\xbf"


class LineScanner:
    """Iterate the complete lines of a file from byte ``start``.

    Iterating yields ``(offset, line)``; ``end`` is the offset just past the last
    line consumed (including lines passed over as too long), which is where the
    next pass starts. A last line without its newline is consumed only if it
    already parses as JSON (a finished file without a final newline); otherwise it
    is left for the next pass, since a writer may still be appending it.
    A UTF-8 byte-order mark at the start of the file is dropped.
    """

    def __init__(
        self,
        path: Path,
        start: int,
        max_line_bytes: int,
        skipped: Counter[str],
        finished: Callable[[bytes], bool] | None = None,
    ):
        self.path = path
        self.end = start
        self.max_line_bytes = max_line_bytes
        self.skipped = skipped
        # Whether a last line without its newline is complete (default: it parses as JSON).
        self.finished = finished or _is_json

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        with self.path.open("rb") as handle:
            handle.seek(self.end)
            offset = self.end
            pending = b""
            oversized = False  # inside a line already counted as too long
            first = offset == 0
            while chunk := handle.read(CHUNK_BYTES):
                if first:
                    first = False
                    if chunk.startswith(UTF8_BOM):
                        chunk = chunk[len(UTF8_BOM) :]
                        offset += len(UTF8_BOM)
                pending += chunk
                lines = pending.split(b"\n")
                pending = lines.pop()
                for line in lines:
                    if oversized:
                        oversized = False
                    elif len(line) > self.max_line_bytes:
                        self.skipped["line_too_long"] += 1
                    else:
                        yield offset, line
                    offset += len(line) + 1
                    self.end = offset
                if len(pending) > self.max_line_bytes:
                    if not oversized:
                        self.skipped["line_too_long"] += 1
                        oversized = True
                    offset += len(pending)
                    pending = b""
            if pending and not oversized and self.finished(pending):
                yield offset, pending
                self.end = offset + len(pending)


def _is_json(data: bytes) -> bool:
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return True


def parse_object(line: bytes, skipped: Counter[str]) -> dict[str, Any] | None:
    """The line as a JSON object, or None (counted in ``skipped`` by reason)."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        if line.strip():
            skipped[_decode_failure(line)] += 1
        return None
    if not isinstance(value, dict):
        skipped["not_an_object"] += 1
        return None
    return value


def _decode_failure(line: bytes) -> str:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return "bad_encoding"
    return "invalid_json"


@functools.lru_cache(maxsize=8)
def first_object(head: bytes) -> dict[str, Any] | None:
    """The first JSON object line in a file's head, for content detection.

    Cached: every reader's ``detect`` asks for it on the same head.
    """
    if head.startswith(UTF8_BOM):
        head = head[len(UTF8_BOM) :]
    for line in head.split(b"\n", 20)[:20]:
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None
    return None


@functools.lru_cache(maxsize=8)
def head_objects(head: bytes, limit: int = 20) -> tuple[dict[str, Any], ...]:
    """The JSON objects on the first complete lines of a file's head (cached).

    Lines that are not objects are left out; the head's last line is used only if
    it parses (a head cut mid-line leaves it out).
    """
    if head.startswith(UTF8_BOM):
        head = head[len(UTF8_BOM) :]
    found: list[dict[str, Any]] = []
    for line in head.split(b"\n", limit)[:limit]:
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return tuple(found)


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one (for optional fields)."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
