"""Shared reader for fine-tuning datasets: one conversation per record.

A file is either JSON lines (one record a line: read incrementally, each line a
session) or one JSON array of records (read whole). The format modules
(``openai``, ``sharegpt``, ``alpaca``, ``completions``) only say how one record
becomes messages.

Multimodal datasets (LLaVA, LLaMA-Factory's ``images`` column) mark where an image
goes with a literal ``<image>`` in the text. That token is not something a person
typed: it becomes the ``<IMAGE>`` placeholder every reader uses for images, in a
record that names its images (``image``/``images`` keys), or wherever it stands
alone on a line.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlx_rsi.records import Message, Session, session_id
from mlx_rsi.sources import ReadOptions, ReadResult
from mlx_rsi.sources.document import load_document, starts_with_array
from mlx_rsi.sources.jsonl import LineScanner, head_objects, parse_object

IMAGE = "<IMAGE>"
DATASET_IMAGE = "<image>"
MEDIA_KEYS = ("image", "images")
_ANY_IMAGE_TOKEN = re.compile(re.escape(DATASET_IMAGE))
_LINE_IMAGE_TOKEN = re.compile(r"(?m)^[ \t]*<image>[ \t]*$")
# (record, key prefix) -> messages, or None when the record does not fit the format
Convert = Callable[[dict[str, Any], str], list[Message] | None]


class RecordsReader:
    def __init__(
        self,
        name: str,
        convert: Convert,
        fits: Callable[[dict[str, Any]], bool],
        array_markers: tuple[bytes, ...],
        session_keys: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.convert = convert
        self.fits = fits
        self.array_markers = array_markers
        self.session_keys = session_keys  # record keys kept as session metadata (e.g. tools)

    def detect(self, path: Path, head: bytes) -> float:
        if starts_with_array(head):
            window = head[:4096]
            return 0.7 if all(m in window for m in self.array_markers) else 0.0
        objects = head_objects(head)
        return 0.9 if objects and self.fits(objects[0]) else 0.0

    def read(
        self,
        path: Path,
        start: int = 0,
        carry: dict[str, Any] | None = None,
        options: ReadOptions | None = None,
    ) -> ReadResult:
        options = options or ReadOptions()
        skipped: Counter[str] = Counter()
        with path.open("rb") as handle:
            head = handle.read(4096)
        if starts_with_array(head):
            return self._read_array(path, options, skipped)
        scanner = LineScanner(path, start, options.max_line_bytes, skipped)
        sessions: list[Session] = []
        for offset, line in scanner:
            record = parse_object(line, skipped)
            if record is not None:
                self._add(sessions, path, record, str(offset), skipped)
        return ReadResult(sessions, scanner.end, {}, skipped)

    def _read_array(self, path: Path, options: ReadOptions, skipped: Counter[str]) -> ReadResult:
        loaded = load_document(path, options.max_document_bytes, skipped)
        if loaded is None:
            return ReadResult([], 0, {}, skipped, replace=True)
        document, size = loaded
        sessions: list[Session] = []
        for index, record in enumerate(document if isinstance(document, list) else []):
            if isinstance(record, dict):
                self._add(sessions, path, record, f"#{index}", skipped)
            else:
                skipped["not_an_object"] += 1
        return ReadResult(sessions, size, {}, skipped, replace=True)

    def _add(
        self,
        sessions: list[Session],
        path: Path,
        record: dict[str, Any],
        native: str,
        skipped: Counter[str],
    ) -> None:
        messages = self.convert(record, native)
        if not messages:
            skipped["unknown_schema"] += 1
            return
        _image_placeholders(messages, any(record.get(k) for k in MEDIA_KEYS))
        sessions.append(
            Session(
                id=session_id(self.name, str(path), native),
                source_format=self.name,
                path=str(path),
                native_id=native,
                messages=messages,
                metadata={k: record[k] for k in self.session_keys if record.get(k)},
            )
        )


def _image_placeholders(messages: list[Message], has_media: bool) -> None:
    """Dataset ``<image>`` tokens → ``<IMAGE>`` (all of them when the record names images)."""
    pattern = _ANY_IMAGE_TOKEN if has_media else _LINE_IMAGE_TOKEN
    for message in messages:
        if DATASET_IMAGE in message.text:
            message.text = pattern.sub(IMAGE, message.text)


def text_of(content: Any) -> str | None:
    """A message content as text: a string, or a list of parts with text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, dict) and part.get("type") in (
                "image_url",
                "image",
                "input_image",
            ):
                parts.append("<IMAGE>")
        return "\n".join(parts)
    if content is None:
        return ""
    return None
