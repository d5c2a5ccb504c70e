"""OpenAI chat fine-tuning JSONL: ``{"messages": [{role, content, tool_calls?, …}], "tools"?}``.

``weight: 0`` on an assistant message (do not train it) is kept on the message;
``tools`` go to the session's metadata. A JSON array of such records works too.
"""

from __future__ import annotations

from typing import Any

import orjson

from mlx_rsi.records import Message, Role, ToolCall
from mlx_rsi.sources.generic import RecordsReader, text_of
from mlx_rsi.sources.jsonl import as_dict

FORMAT = "openai"
ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
    "function": "tool",
}


def fits(record: dict[str, Any]) -> bool:
    messages = record.get("messages")
    return (
        isinstance(messages, list)
        and bool(messages)
        and isinstance(messages[0], dict)
        and "role" in messages[0]
    )


def convert(record: dict[str, Any], prefix: str) -> list[Message] | None:
    if not fits(record):
        return None
    messages = []
    for index, raw in enumerate(record["messages"]):
        message = _message(raw, f"{prefix}:{index}") if isinstance(raw, dict) else None
        if message is None:
            return None
        messages.append(message)
    return messages


def _message(raw: dict[str, Any], key: str) -> Message | None:
    role = ROLES.get(str(raw.get("role")))
    text = text_of(raw.get("content"))
    if role is None or text is None:
        return None
    message = Message(role, text, key=key)
    message.tool_calls = [_call(c) for c in raw.get("tool_calls") or [] if isinstance(c, dict)]
    if isinstance(raw.get("function_call"), dict):  # the older single-call field
        message.tool_calls.append(_call({"function": raw["function_call"]}))
    if isinstance(raw.get("tool_call_id"), str):
        message.tool_call_id = raw["tool_call_id"]
    if isinstance(raw.get("name"), str):
        message.name = raw["name"]
    weight = raw.get("weight")
    if isinstance(weight, int | float) and not isinstance(weight, bool):
        message.weight = float(weight)
    return message


def _call(raw: dict[str, Any]) -> ToolCall:
    function = as_dict(raw.get("function"))
    return ToolCall(
        str(raw.get("id") or ""),
        str(function.get("name") or ""),
        parse_arguments(function.get("arguments")),
    )


def parse_arguments(arguments: Any) -> Any:
    """Tool arguments as a JSON value: a JSON string is parsed, anything else kept."""
    if isinstance(arguments, str):
        try:
            return orjson.loads(arguments)
        except orjson.JSONDecodeError:
            return arguments
    return arguments if arguments is not None else {}


READER = RecordsReader(FORMAT, convert, fits, (b'"messages"', b'"role"'), ("tools",))
