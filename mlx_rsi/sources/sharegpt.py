"""ShareGPT: ``{"conversations": [{"from": human|gpt|system|function_call|observation, "value"}]}``.

``function_call`` values (``{"name", "arguments"}``) become tool calls on an
assistant message, and the following ``observation`` answers the last call. A
top-level ``system`` prompt comes first; ``tools`` go to the session's metadata.
"""

from __future__ import annotations

from typing import Any

import orjson

from mlx_rsi.records import Message, Role, ToolCall
from mlx_rsi.sources.generic import RecordsReader
from mlx_rsi.sources.openai import parse_arguments

FORMAT = "sharegpt"
ROLES: dict[str, Role] = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "model": "assistant",
    "system": "system",
    "observation": "tool",
    "tool": "tool",
    "function": "tool",
}


def fits(record: dict[str, Any]) -> bool:
    turns = record.get("conversations")
    return (
        isinstance(turns, list)
        and bool(turns)
        and isinstance(turns[0], dict)
        and "from" in turns[0]
    )


def convert(record: dict[str, Any], prefix: str) -> list[Message] | None:
    if not fits(record):
        return None
    messages: list[Message] = []
    if isinstance(record.get("system"), str) and record["system"]:
        messages.append(Message("system", record["system"], key=f"{prefix}:system"))
    last_call = None
    for index, turn in enumerate(record["conversations"]):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            return None
        key = f"{prefix}:{index}"
        if turn.get("from") == "function_call":
            last_call = _call(turn["value"], f"call_{index}")
            messages.append(Message("assistant", "", key=key, tool_calls=[last_call]))
            continue
        role = ROLES.get(str(turn.get("from")))
        if role is None:
            return None
        message = Message(role, turn["value"], key=key)
        if role == "tool" and last_call is not None:
            message.tool_call_id, message.name = last_call.id, last_call.name
        messages.append(message)
    return messages


def _call(value: str, call_id: str) -> ToolCall:
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        return ToolCall(call_id, "", value)
    if not isinstance(data, dict):
        return ToolCall(call_id, "", data)
    return ToolCall(call_id, str(data.get("name") or ""), parse_arguments(data.get("arguments")))


READER = RecordsReader(FORMAT, convert, fits, (b'"conversations"', b'"from"'), ("tools",))
