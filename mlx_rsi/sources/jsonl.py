"""Fast, fault-tolerant JSON-lines iteration shared by the line-based readers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

CHUNK_BYTES = 4 * 1024 * 1024


class LineScanner:
    """Iterate the complete lines of a file from byte ``start``.

    Iterating yields ``(offset, line)``; ``end`` is the offset just past the last
    line consumed (including lines passed over as too long), which is where the
    next pass starts. A last line without its newline is consumed only if it
    already parses as JSON (a finished file without a final newline); otherwise it
    is left for the next pass, since a writer may still be appending it.
    """

    def __init__(self, path: Path, start: int, max_line_bytes: int, skipped: Counter[str]):
        self.path = path
        self.end = start
        self.max_line_bytes = max_line_bytes
        self.skipped = skipped

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        with self.path.open("rb") as handle:
            handle.seek(self.end)
            offset = self.end
            pending = b""
            oversized = False  # inside a line already counted as too long
            while chunk := handle.read(CHUNK_BYTES):
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
            if pending and not oversized and _is_json(pending):
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
    if not line.strip():
        return None
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        skipped["invalid_json"] += 1
        return None
    if not isinstance(value, dict):
        skipped["not_an_object"] += 1
        return None
    return value


def first_object(head: bytes) -> dict[str, Any] | None:
    """The first JSON object line in a file's head, for content detection."""
    for line in head.split(b"\n")[:20]:
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None
    return None
