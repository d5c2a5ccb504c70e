"""Gemini CLI sessions: ``~/.gemini/tmp/<project hash>/chats/session-*.json|jsonl``.

Two shapes (FORMATS.md; gemini-cli's ChatRecordingService):

- ``.json`` (older): one ``{sessionId, projectHash, startTime, messages: […]}`` object;
- ``.jsonl`` (newer): a metadata line, then message records, where a record whose
  ``id`` was seen before replaces it in place (tool calls and results are filled in
  that way), ``{"$set": {…}}`` patches the metadata (a ``messages`` list there
  replaces the whole history) and ``{"$rewindTo": id}`` drops that message and
  everything after it.

Both are read whole on every change (``replace``): the files are small and the
rewind/replace semantics need the full history. Messages ``{id, timestamp, type:
user|gemini|info|error|warning, content, toolCalls, thoughts, model}``: ``gemini``
→ assistant with tool calls and one ``tool`` message per call result; ``error`` →
an assistant message with an ``api_error`` signal; ``info``/``warning`` skipped.
Tool call status ``error`` → ``tool_error``, ``cancelled`` → ``rejection``,
``success`` → ``tool_success``. Sub-agent sessions (``chats/<parent id>/<id>.jsonl``)
point at their parent session.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from mlx_rsi.records import Message, Session, ToolCall, session_id
from mlx_rsi.signals import add_signal
from mlx_rsi.sources import ReadOptions, ReadResult
from mlx_rsi.sources.document import load_document, starts_with_array, starts_with_object
from mlx_rsi.sources.jsonl import head_objects

FORMAT = "gemini"
SLASH_COMMAND = re.compile(r"^/[a-z][\w-]*(\s|$)")
PROMPT_LOG_NOTE = "Gemini CLI prompt log (the prompts are read from the chat sessions)"
QUIET_TYPES = frozenset({"info", "warning"})


class GeminiReader:
    name = FORMAT

    def detect(self, path: Path, head: bytes) -> float:
        objects = head_objects(head)
        if objects and "sessionId" in objects[0] and "projectHash" in objects[0]:
            return 0.95
        window = head[:4096]
        if starts_with_object(head) and b'"sessionId"' in window and b'"projectHash"' in window:
            return 0.9  # a pretty-printed .json session
        if _is_prompt_log(head):
            return 0.9
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
        with path.open("rb") as handle:
            if _is_prompt_log(handle.read(4096)):
                return ReadResult([], 0, {}, skipped, replace=True, note=PROMPT_LOG_NOTE)
        loaded = _load(path, options, skipped)
        if loaded is None:
            return ReadResult([], 0, {}, skipped, replace=True)
        metadata, records, size = loaded
        session = _session(path, metadata)
        for record in records:
            if isinstance(record, dict):
                _add(session, record, skipped)
            else:
                skipped["not_an_object"] += 1
        return ReadResult([session] if session.messages else [], size, {}, skipped, replace=True)


def _is_prompt_log(head: bytes) -> bool:
    """``~/.gemini/tmp/<hash>/logs.json``: an array of ``{sessionId, messageId, type, message}``."""
    window = head[:4096]
    return (
        starts_with_array(head)
        and b'"sessionId"' in window
        and b'"messageId"' in window
        and b'"projectHash"' not in window
    )


def _load(
    path: Path, options: ReadOptions, skipped: Counter[str]
) -> tuple[dict[str, Any], list[Any], int] | None:
    with path.open("rb") as handle:
        whole_json = path.suffix == ".json" or (handle.read(1) == b"{" and _single(path))
    if whole_json:
        loaded = load_document(path, options.max_document_bytes, skipped)
        if loaded is None:
            return None
        document, size = loaded
        if not isinstance(document, dict):
            skipped["unknown_schema"] += 1
            return None
        messages = document.get("messages")
        return document, messages if isinstance(messages, list) else [], size
    return _replay(path, options, skipped)


def _single(path: Path) -> bool:
    """True when the file is one JSON document (not JSON lines)."""
    try:
        orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError:
        return False
    return True


def _replay(
    path: Path, options: ReadOptions, skipped: Counter[str]
) -> tuple[dict[str, Any], list[Any], int]:
    from mlx_rsi.sources.jsonl import LineScanner, parse_object

    metadata: dict[str, Any] = {}
    messages: dict[str, dict[str, Any]] = {}
    scanner = LineScanner(path, 0, options.max_line_bytes, skipped)
    for _offset, line in scanner:
        record = parse_object(line, skipped)
        if record is None:
            continue
        if isinstance(record.get("$rewindTo"), str):
            _rewind(messages, record["$rewindTo"])
        elif isinstance(record.get("id"), str):
            messages[record["id"]] = record  # a repeated id updates the message in place
        elif isinstance(record.get("$set"), dict):
            metadata.update(record["$set"])
        elif "sessionId" in record:
            metadata.update(record)
        else:
            skipped["unknown_record_type"] += 1
    replaced = metadata.get("messages")
    history = replaced if isinstance(replaced, list) and replaced else list(messages.values())
    return metadata, history, scanner.end


def _rewind(messages: dict[str, dict[str, Any]], target: str) -> None:
    ids = list(messages)
    cut = ids.index(target) if target in messages else 0
    for dropped in ids[cut:]:
        del messages[dropped]


def _session(path: Path, metadata: dict[str, Any]) -> Session:
    native = str(metadata.get("sessionId") or path.stem)
    directories = metadata.get("directories")
    project = directories[0] if isinstance(directories, list) and directories else None
    return Session(
        id=session_id(FORMAT, str(path), native),
        source_format=FORMAT,
        path=str(path),
        native_id=native,
        started_at=_str(metadata.get("startTime")),
        project=project if isinstance(project, str) else None,
        title=_str(metadata.get("summary")),
        parent_id=_parent(path, metadata),
        metadata={k: metadata[k] for k in ("projectHash", "kind") if _str(metadata.get(k))},
    )


def _parent(path: Path, metadata: dict[str, Any]) -> str | None:
    """A sub-agent's main session: ``chats/<parent id>/<id>.jsonl`` → its session file."""
    if metadata.get("kind") != "subagent" or path.parent.name == "chats":
        return None
    parent_native = path.parent.name
    candidates = path.parent.parent.glob(f"session-*-{parent_native[:8]}.json*")
    # a migrated .json session continues in its .jsonl twin: prefer that one
    for candidate in sorted(candidates, key=lambda c: (c.suffix != ".jsonl", c.name)):
        return session_id(FORMAT, str(candidate), parent_native)
    return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _add(session: Session, record: dict[str, Any], skipped: Counter[str]) -> None:
    kind = record.get("type")
    key = str(record.get("id") or len(session.messages))
    timestamp = _str(record.get("timestamp"))
    text = _content_text(record.get("content"))
    if kind == "user":
        typed = not SLASH_COMMAND.match(text)
        session.messages.append(Message("user", text, key=key, timestamp=timestamp, typed=typed))
    elif kind == "gemini":
        _add_answer(session, record, key, timestamp, text)
    elif kind == "error":
        message = Message("assistant", text, key=key, timestamp=timestamp)
        add_signal(message, "api_error", True, text[:200])
        session.messages.append(message)
    elif kind not in QUIET_TYPES:
        skipped["unknown_record_type"] += 1


def _add_answer(
    session: Session, record: dict[str, Any], key: str, timestamp: str | None, text: str
) -> None:
    answer = Message("assistant", text, key=key, timestamp=timestamp)
    if isinstance(record.get("model"), str):
        answer.metadata["model"] = record["model"]
    thoughts = [_thought(t) for t in record.get("thoughts") or [] if isinstance(t, dict)]
    answer.reasoning = "\n".join(t for t in thoughts if t) or None
    session.messages.append(answer)
    for call in record.get("toolCalls") or []:
        if isinstance(call, dict):
            _add_call(session, answer, call, key, timestamp)


def _thought(thought: dict[str, Any]) -> str:
    subject, description = thought.get("subject"), thought.get("description")
    return ": ".join(x for x in (subject, description) if isinstance(x, str) and x)


def _add_call(
    session: Session, answer: Message, call: dict[str, Any], key: str, timestamp: str | None
) -> None:
    call_id = str(call.get("id") or f"{key}:{len(answer.tool_calls)}")
    name = str(call.get("name") or "")
    answer.tool_calls.append(ToolCall(call_id, name, call.get("args") or {}))
    status = call.get("status")
    result = _result_text(call)
    if result is None and status not in ("error", "cancelled"):
        return  # not run yet
    message = Message(
        "tool",
        result or "",
        key=f"{key}:{call_id}",
        tool_call_id=call_id,
        name=name,
        is_error=status in ("error", "cancelled"),
        timestamp=_str(call.get("timestamp")) or timestamp,
    )
    session.messages.append(message)
    if status == "error":
        first = (result or "").strip().splitlines()[:1]
        add_signal(answer, "tool_error", True, f"{name}: {first[0] if first else 'error'}"[:200])
    elif status == "cancelled":
        add_signal(answer, "rejection", True, "")
    elif status == "success":
        add_signal(answer, "tool_success", True, name)


def _result_text(call: dict[str, Any]) -> str | None:
    result = call.get("result")
    if result is None:
        display = call.get("resultDisplay")
        return display if isinstance(display, str) else None
    parts = result if isinstance(result, list) else [result]
    texts = []
    for part in parts:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict):
            texts.append(_part_text(part))
    return "\n".join(t for t in texts if t)


def _part_text(part: dict[str, Any]) -> str:
    if isinstance(part.get("text"), str):
        return str(part["text"])
    response = part.get("functionResponse")
    if isinstance(response, dict):
        body = response.get("response")
        if isinstance(body, dict):
            for field_name in ("output", "error", "content"):
                if isinstance(body.get(field_name), str):
                    return str(body[field_name])
            return orjson.dumps(body).decode()
    return ""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        content = [content]
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part, dict) and "inlineData" in part:
                texts.append("<IMAGE>")
        return "\n".join(texts)
    return ""


READER = GeminiReader()
