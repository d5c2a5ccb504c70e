"""The seed guide's collector format: ``sessions/<name>/interactions.jsonl``.

Each line is ``{"timestamp", "user", "assistant", "metadata": {"success": bool, ...}}``;
a file is one session named after its folder.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from mlx_rsi.records import Message, Session, Signal, session_id
from mlx_rsi.sources import ReadOptions, ReadResult
from mlx_rsi.sources.jsonl import LineScanner, first_object, parse_object

FORMAT = "collector"


class CollectorReader:
    name = FORMAT

    def detect(self, path: Path, head: bytes) -> float:
        first = first_object(head)
        if first is None:
            return 0.0
        if isinstance(first.get("user"), str) and isinstance(first.get("assistant"), str):
            return 0.95
        return 0.0

    def read(
        self,
        path: Path,
        start: int = 0,
        carry: dict[str, Any] | None = None,
        options: ReadOptions | None = None,
    ) -> ReadResult:
        options = options or ReadOptions()
        skipped: Counter[str] = Counter()
        name = path.parent.name if path.name == "interactions.jsonl" else path.stem
        session = Session(
            id=session_id(FORMAT, str(path.resolve()), name),
            source_format=FORMAT,
            path=str(path),
            native_id=name,
            title=name,
        )
        scanner = LineScanner(path, start, options.max_line_bytes, skipped)
        last_record: int | None = None
        for offset, line in scanner:
            record = parse_object(line, skipped)
            if record is None:
                continue
            messages = interaction_messages(record, offset)
            if messages is None:
                skipped["missing_fields"] += 1
                continue
            last_record = offset
            session.started_at = session.started_at or messages[0].timestamp
            session.messages.extend(messages)
        # The last interaction is re-read next time, so that a correction in the
        # next one reaches its answer (its keys are stable: an upsert).
        end = scanner.end if last_record is None else last_record
        return ReadResult([session] if session.messages else [], end, {}, skipped)


def interaction_messages(record: dict[str, Any], offset: int) -> list[Message] | None:
    """The user and assistant messages of one collector line, or None if malformed."""
    user, assistant = record.get("user"), record.get("assistant")
    if not isinstance(user, str) or not isinstance(assistant, str):
        return None
    raw_metadata = record.get("metadata")
    metadata: dict[str, Any] = raw_metadata if isinstance(raw_metadata, dict) else {}
    timestamp = record.get("timestamp") if isinstance(record.get("timestamp"), str) else None
    signals = []
    if isinstance(metadata.get("success"), bool):
        signals.append(Signal("feedback", metadata["success"], "metadata.success"))
    return [
        Message("user", user, key=f"{offset}:u", timestamp=timestamp),
        Message(
            "assistant",
            assistant,
            key=f"{offset}:a",
            timestamp=timestamp,
            signals=signals,
            metadata=dict(metadata),
        ),
    ]


READER = CollectorReader()
