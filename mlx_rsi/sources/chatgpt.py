"""ChatGPT data export: ``conversations.json`` (or ``conversations-NNN.json`` shards).

An array of ``{id, title, create_time, mapping, current_node}``; ``mapping[id] =
{parent, children, message}``. The active branch is followed from ``current_node``
up its parents (regenerated or edited branches are left out). Hidden system
messages and the user's custom-instruction context (``user_editable_context``)
are kept with ``typed=False`` or skipped when empty. An assistant message sent to
a tool (``recipient`` other than ``all``) becomes a tool call, and the tool's
reply a ``tool`` message; a tool reply of content type ``system_error``
("Encountered exception …") is a failed call: ``is_error`` and a ``tool_error`` on
the answer that made it. Thumbs from ``message_feedback.json`` beside the export
become ``feedback`` signals (by message id, else on the conversation's last answer).
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlx_rsi.records import Message, Role, Session, ToolCall, session_id
from mlx_rsi.signals import add_signal
from mlx_rsi.sources import ReadOptions, ReadResult
from mlx_rsi.sources.document import load_document, starts_with_array
from mlx_rsi.sources.jsonl import UTF8_BOM, as_dict

FORMAT = "chatgpt"
FEEDBACK_FILE = "message_feedback.json"
ROLES: dict[str, Role] = {
    "user": "user",
    "assistant": "assistant",
    "system": "system",
    "tool": "tool",
}
_EXPORT_NAME = re.compile(r"conversations(?:-\d+)?\.json")
SYSTEM_ERROR = "system_error"  # a tool's failure, e.g. "Encountered exception: …"
SKIPPED_CONTENT = frozenset({"model_editable_context", "reasoning_recap", "thoughts"})


class ChatGPTReader:
    name = FORMAT

    def detect(self, path: Path, head: bytes) -> float:
        if not starts_with_array(head):
            return 0.0
        window = head[:16384]
        if b'"mapping"' in window and (b'"current_node"' in window or b'"create_time"' in window):
            return 0.9
        if _EXPORT_NAME.fullmatch(path.name) and head.strip(UTF8_BOM + b" \t\r\n") == b"[]":
            return 0.6  # an export of an account without conversations
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
        loaded = load_document(path, options.max_document_bytes, skipped)
        if loaded is None:
            return ReadResult([], 0, {}, skipped, replace=True)
        document, size = loaded
        feedback = _feedback(path.parent / FEEDBACK_FILE, options)
        sessions = []
        for conversation in document if isinstance(document, list) else []:
            session = _conversation(path, as_dict(conversation))
            if session is None:
                skipped["unknown_schema"] += 1
                continue
            _apply_feedback(session, feedback.get(session.native_id, []))
            if session.messages:
                sessions.append(session)
        return ReadResult(sessions, size, {}, skipped, replace=True)


def _conversation(path: Path, data: dict[str, Any]) -> Session | None:
    mapping = data.get("mapping")
    if not isinstance(mapping, dict):
        return None
    native = str(data.get("conversation_id") or data.get("id") or "")
    session = Session(
        id=session_id(FORMAT, str(path), native),
        source_format=FORMAT,
        path=str(path),
        native_id=native,
        started_at=_iso(data.get("create_time")),
        title=data.get("title") if isinstance(data.get("title"), str) else None,
    )
    if isinstance(data.get("default_model_slug"), str):
        session.metadata["model"] = data["default_model_slug"]
    last_call: ToolCall | None = None
    caller: Message | None = None
    for node_id in _active_branch(mapping, data.get("current_node")):
        node = mapping.get(node_id)
        raw = node.get("message") if isinstance(node, dict) else None
        if not isinstance(raw, dict):
            continue
        message = _message(node_id, raw, last_call)
        if message is None:
            continue
        if message.tool_calls:
            last_call, caller = message.tool_calls[-1], message
        elif message.is_error and caller is not None:
            first = message.text.strip().splitlines()[0] if message.text.strip() else ""
            add_signal(caller, "tool_error", True, f"{message.name or 'tool'}: {first}"[:200])
        session.messages.append(message)
    return session


def _active_branch(mapping: dict[str, Any], current: Any) -> list[str]:
    """Node ids from the root to ``current_node`` (or the newest leaf when it is missing)."""
    if not isinstance(current, str) or current not in mapping:
        leaves = [k for k, v in mapping.items() if isinstance(v, dict) and not v.get("children")]
        current = leaves[-1] if leaves else None
    branch: list[str] = []
    seen = set()
    while isinstance(current, str) and current in mapping and current not in seen:
        seen.add(current)
        branch.append(current)
        node = mapping[current]
        current = node.get("parent") if isinstance(node, dict) else None
    return branch[::-1]


def _message(node_id: str, raw: dict[str, Any], last_call: ToolCall | None) -> Message | None:
    author = as_dict(raw.get("author"))
    role = ROLES.get(str(author.get("role")))
    content = as_dict(raw.get("content"))
    kind = content.get("content_type")
    metadata = as_dict(raw.get("metadata"))
    if role is None or kind in SKIPPED_CONTENT:
        return None
    text = _content_text(content)
    hidden = bool(metadata.get("is_visually_hidden_from_conversation"))
    if not text.strip() and role != "assistant":
        return None
    message = Message(role, text, key=node_id, timestamp=_iso(raw.get("create_time")))
    if kind == "user_editable_context" or (role == "system" and hidden):
        message.role, message.typed = "system", False
    recipient = raw.get("recipient")
    if role == "assistant" and isinstance(recipient, str) and recipient != "all":
        message.tool_calls = [ToolCall(node_id, recipient, text)]
        message.text = ""
    if role == "tool":
        message.name = author.get("name") if isinstance(author.get("name"), str) else None
        message.is_error = kind == SYSTEM_ERROR
        if last_call is not None:
            message.tool_call_id = last_call.id
    if isinstance(metadata.get("model_slug"), str):
        message.metadata["model"] = metadata["model_slug"]
    return message if message.text or message.tool_calls else None


def _content_text(content: dict[str, Any]) -> str:
    parts = content.get("parts")
    if isinstance(parts, list):
        texts = []
        for part in parts:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict):
                texts.append(_part_text(part))
        return "\n".join(t for t in texts if t)
    if content.get("content_type") == "user_editable_context":
        fields = (content.get("user_profile"), content.get("user_instructions"))
        return "\n\n".join(f for f in fields if isinstance(f, str) and f)
    for field_name in ("text", "result"):
        if isinstance(content.get(field_name), str):
            return str(content[field_name])
    return ""


def _part_text(part: dict[str, Any]) -> str:
    if part.get("content_type") == "image_asset_pointer":
        return "<IMAGE>"
    text = part.get("text")
    return text if isinstance(text, str) else ""


def _iso(value: Any) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC).isoformat(timespec="seconds")
    return None


def _feedback(path: Path, options: ReadOptions) -> dict[str, list[dict[str, Any]]]:
    """conversation id -> its feedback entries (an unreadable file counts as none)."""
    if not path.is_file():
        return {}
    try:
        loaded = load_document(path, options.max_document_bytes, Counter())
    except OSError:
        return {}
    entries = loaded[0] if loaded is not None and isinstance(loaded[0], list) else []
    by_conversation: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("conversation_id"), str):
            by_conversation.setdefault(entry["conversation_id"], []).append(entry)
    return by_conversation


def _apply_feedback(session: Session, entries: list[dict[str, Any]]) -> None:
    answers = [m for m in session.messages if m.role == "assistant"]
    by_key = {m.key: m for m in answers}
    for entry in entries:
        rating = str(entry.get("rating") or "").lower().replace("_", "")
        if rating not in ("thumbsup", "thumbsdown"):
            continue
        target = by_key.get(str(entry.get("message_id"))) or (answers[-1] if answers else None)
        if target is not None:
            add_signal(target, "feedback", rating == "thumbsup", f"chatgpt {rating}")


READER = ChatGPTReader()
