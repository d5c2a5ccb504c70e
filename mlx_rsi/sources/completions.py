"""mlx-lm completion data: ``{"prompt", "completion"}`` lines (``train/valid/test.jsonl``).

mlx-lm's ``messages`` records are read by the ``openai`` format; bare ``text``
records carry no turn structure and are counted as ``unknown_schema``.
"""

from __future__ import annotations

from typing import Any

from mlx_rsi.records import Message
from mlx_rsi.sources.generic import RecordsReader

FORMAT = "completions"


def fits(record: dict[str, Any]) -> bool:
    return isinstance(record.get("prompt"), str) and isinstance(record.get("completion"), str)


def convert(record: dict[str, Any], prefix: str) -> list[Message] | None:
    if not fits(record):
        return None
    return [
        Message("user", record["prompt"], key=f"{prefix}:u"),
        Message("assistant", record["completion"], key=f"{prefix}:a"),
    ]


READER = RecordsReader(FORMAT, convert, fits, (b'"prompt"', b'"completion"'))
