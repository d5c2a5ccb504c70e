"""The seed guide's collector format: ``sessions/<name>/interactions.jsonl``.

Each line is ``{"timestamp", "user", "assistant", "metadata": {"success": bool, ...}}``;
a file is one session named after its folder. ``mlx-rsi serve`` and ``chat`` write
the same format, with a ``metadata.request_id``; feedback given later arrives as
its own line ``{"timestamp", "feedback": {"request_id", "success", "comment"}}``
and becomes a feedback signal on that answer. So that late feedback is seen,
reading resumes at the oldest answer of the last day that has none yet (those
lines are re-read and upserted under the same keys).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
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
        feedback: dict[str, Signal] = {}
        awaiting: list[tuple[int, Message]] = []  # (offset, answer) with a request id
        for offset, line in scanner:
            record = parse_object(line, skipped)
            if record is None:
                continue
            if _collect_feedback(record, feedback):
                continue
            messages = interaction_messages(record, offset)
            if messages is None:
                skipped["missing_fields"] += 1
                continue
            last_record = offset
            session.started_at = session.started_at or messages[0].timestamp
            session.messages.extend(messages)
            answer_meta = messages[-1].metadata
            if answer_meta.get("request_id") and "success" not in answer_meta:
                awaiting.append((offset, messages[-1]))
        unrated = _attach_feedback(awaiting, feedback)
        # The last interaction is re-read next time, so that a correction in the
        # next one reaches its answer (its keys are stable: an upsert); so is the
        # oldest recent answer still waiting for feedback.
        end = scanner.end if last_record is None else last_record
        end = min([end, *unrated])
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


FEEDBACK_WINDOW = timedelta(days=1)  # how long an answer's feedback is waited for


def _collect_feedback(record: dict[str, Any], feedback: dict[str, Signal]) -> bool:
    """True when ``record`` is a feedback line (kept in ``feedback`` by request id)."""
    entry = record.get("feedback")
    if not isinstance(entry, dict):
        return False
    request_id, success = entry.get("request_id"), entry.get("success")
    if isinstance(request_id, str) and isinstance(success, bool) and request_id not in feedback:
        comment = entry.get("comment")
        detail = f"feedback: {comment}" if isinstance(comment, str) and comment else "feedback"
        feedback[request_id] = Signal("feedback", success, detail)
    return True


def _attach_feedback(awaiting: list[tuple[int, Message]], feedback: dict[str, Signal]) -> list[int]:
    """Give answers their feedback; the offsets of recent answers still without any."""
    unrated: list[int] = []
    horizon = datetime.now(UTC) - FEEDBACK_WINDOW
    for offset, answer in awaiting:
        signal = feedback.get(str(answer.metadata["request_id"]))
        if signal is not None:
            answer.signals = [s for s in answer.signals if s.kind != "feedback"] + [signal]
        elif _after(answer.timestamp, horizon):
            unrated.append(offset)
    return unrated


def _after(timestamp: str | None, horizon: datetime) -> bool:
    try:
        moment = datetime.fromisoformat(timestamp or "")
    except ValueError:
        return False
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment > horizon


READER = CollectorReader()
