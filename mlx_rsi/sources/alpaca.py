"""Alpaca: ``{instruction, input, output, system?, history?: [[q, a], …]}``.

The prompt is the instruction, then the input after a blank line (when given);
``history`` pairs come before it as earlier turns.
"""

from __future__ import annotations

from typing import Any

from mlx_rsi.records import Message
from mlx_rsi.sources.generic import RecordsReader

FORMAT = "alpaca"


def fits(record: dict[str, Any]) -> bool:
    return isinstance(record.get("instruction"), str) and isinstance(record.get("output"), str)


def convert(record: dict[str, Any], prefix: str) -> list[Message] | None:
    if not fits(record):
        return None
    messages = []
    if isinstance(record.get("system"), str) and record["system"]:
        messages.append(Message("system", record["system"], key=f"{prefix}:system"))
    history = record.get("history") or []
    if not isinstance(history, list):
        return None
    for index, pair in enumerate(history):
        if not (
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)
        ):
            return None
        messages.append(Message("user", pair[0], key=f"{prefix}:h{index}u"))
        messages.append(Message("assistant", pair[1], key=f"{prefix}:h{index}a"))
    prompt = record["instruction"]
    if isinstance(record.get("input"), str) and record["input"].strip():
        prompt = f"{prompt}\n\n{record['input']}"
    messages.append(Message("user", prompt, key=f"{prefix}:u"))
    messages.append(Message("assistant", record["output"], key=f"{prefix}:a"))
    return messages


READER = RecordsReader(FORMAT, convert, fits, (b'"instruction"', b'"output"'))
