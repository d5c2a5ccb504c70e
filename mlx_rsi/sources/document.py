"""Whole-file JSON documents (ChatGPT exports, Gemini .json sessions, JSON-array datasets)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from mlx_rsi.sources.jsonl import UTF8_BOM


def load_document(path: Path, max_bytes: int, skipped: Counter[str]) -> tuple[Any, int] | None:
    """The parsed document and its size, or None (the reason counted in ``skipped``)."""
    size = os.stat(path).st_size
    if size > max_bytes:
        skipped["too_large"] += 1
        return None
    data = path.read_bytes()
    try:
        value = orjson.loads(data[len(UTF8_BOM) :] if data.startswith(UTF8_BOM) else data)
    except orjson.JSONDecodeError:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            skipped["bad_encoding"] += 1
            return None
        skipped["invalid_json"] += 1
        return None
    return value, len(data)


def starts_with_array(head: bytes) -> bool:
    return head[:256].lstrip(UTF8_BOM + b" \t\r\n").startswith(b"[")


def starts_with_object(head: bytes) -> bool:
    return head[:256].lstrip(UTF8_BOM + b" \t\r\n").startswith(b"{")
