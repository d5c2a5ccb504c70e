"""The append-only record of served interactions and their feedback.

Records use the collector format (``{"timestamp", "user", "assistant",
"metadata"}``), one file per day under ``sessions/serve-<YYYYMMDD>/``, so the
next ``ingest`` reads them like any collected session. Feedback arrives later
as its own line, ``{"timestamp", "feedback": {"request_id", "success",
"comment"}}``, in the file of the day its request was answered (the request id
carries that day); the collector reader attaches it to the answer as a
feedback signal. Each line is one ``write`` on an ``O_APPEND`` descriptor under
a process lock, then fsynced: concurrent requests never interleave or lose a
record, and a crash loses at most the line being written.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from mlx_rsi.collector import INTERACTIONS_FILE

FOLDER_PREFIX = "serve-"
_REQUEST_ID = re.compile(r"^chatcmpl-(\d{8})-[0-9a-f]{12}$")


def new_request_id(now: datetime | None = None) -> str:
    day = (now or datetime.now()).strftime("%Y%m%d")
    return f"chatcmpl-{day}-{secrets.token_hex(6)}"


def request_day(request_id: str) -> str | None:
    """The ``YYYYMMDD`` a request id was issued on, or None if it is not one of ours."""
    match = _REQUEST_ID.match(request_id)
    return match.group(1) if match else None


class Recorder:
    """Appends interactions and feedback under ``sessions_dir``; safe across threads."""

    def __init__(self, sessions_dir: Path, *, enabled: bool = True) -> None:
        self.sessions_dir = Path(sessions_dir)
        self.enabled = enabled
        self._lock = threading.Lock()

    def file_for_day(self, day: str) -> Path:
        return self.sessions_dir / f"{FOLDER_PREFIX}{day}" / INTERACTIONS_FILE

    def record_interaction(
        self, request_id: str, messages: list[dict[str, Any]], answer: str, metadata: dict[str, Any]
    ) -> None:
        """One answered request: the last user message, the answer, and what led to it."""
        if not self.enabled:
            return
        user = next((_text(m) for m in reversed(messages) if m.get("role") == "user"), "")
        history = [{"role": str(m.get("role")), "content": _text(m)} for m in messages[:-1] if m]
        record: dict[str, Any] = {
            "timestamp": _now(),
            "user": user,
            "assistant": answer,
            "metadata": {"request_id": request_id, "source": "serve", **metadata},
        }
        if history:
            record["metadata"]["history"] = history
        self._append(self.file_for_day(request_day(request_id) or _today()), record)

    def record_feedback(self, request_id: str, success: bool, comment: str = "") -> bool:
        """Append feedback for ``request_id``; False when no such request was recorded."""
        day = request_day(request_id)
        if day is None or not self.enabled:
            return False
        path = self.file_for_day(day)
        if not _mentions(path, request_id):
            return False
        feedback: dict[str, Any] = {"request_id": request_id, "success": success}
        if comment:
            feedback["comment"] = comment
        self._append(path, {"timestamp": _now(), "feedback": feedback})
        return True

    def _append(self, path: Path, record: dict[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)


def read_records(sessions_dir: Path) -> list[dict[str, Any]]:
    """Every served interaction and feedback line, oldest file first (for reports)."""
    records: list[dict[str, Any]] = []
    for path in sorted(Path(sessions_dir).glob(f"{FOLDER_PREFIX}*/{INTERACTIONS_FILE}")):
        with path.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a torn last line after a crash
                if isinstance(record, dict):
                    records.append(record)
    return records


def _mentions(path: Path, request_id: str) -> bool:
    try:
        with path.open("rb") as handle:
            needle = request_id.encode()
            return any(needle in line for line in handle)
    except OSError:
        return False


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: keep the text ones
        return "".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def _now() -> str:
    return datetime.now().astimezone().isoformat()


def _today() -> str:
    return datetime.now().strftime("%Y%m%d")
