"""Recall and false-positive rate of redaction on a labelled corpus.

``tests/fixtures/redaction/secrets.jsonl``: secrets of many kinds, each in prose,
code, a shell command, JSON or tool output, with the values that must disappear.
``innocent.jsonl``: look-alikes that must come out unchanged (UUIDs, session ids,
git SHAs, digests, lockfile lines, model names, identifiers that mention keys,
versions, base64 of ordinary data, URLs, numbers shaped like cards or phones).

Each item is redacted the way ingest does it (one session; a JSON item also as a
tool call's arguments, which takes the by-key path). Recall must be 100 % and the
false-positive rate at most 1 %; both are printed (``pytest -s``) and recorded in
``docs/curate.md``.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from mlx_rsi.config import CurateConfig
from mlx_rsi.records import Message, Session, ToolCall
from mlx_rsi.redact import redact_session

FIXTURES = Path(__file__).parent / "fixtures" / "redaction"
CFG = CurateConfig(redact_current_user=False)


def _load(name: str) -> list[dict[str, Any]]:
    lines = (FIXTURES / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


SECRETS = _load("secrets.jsonl")
INNOCENT = _load("innocent.jsonl")


def _redacted(text: str, context: str) -> list[str]:
    """What ingest stores for ``text``: as a message, and (JSON) as tool arguments."""
    calls = []
    if context == "json":
        calls = [ToolCall("t", "Write", json.loads(text))]
    session = Session(
        id="s",
        source_format="t",
        path="t",
        messages=[
            Message("tool", text, key="1"),
            Message("assistant", "", key="2", tool_calls=calls),
        ],
    )
    redact_session(session, CFG)
    out = [session.messages[0].text]
    if calls:
        out.append(json.dumps(session.messages[1].tool_calls[0].arguments))
    return out


def _leaks(item: dict[str, Any]) -> list[str]:
    stored = _redacted(item["text"], item["context"])
    return [s for s in item["secrets"] for text in stored if s in text]


def _changed(item: dict[str, Any]) -> bool:
    context = "json" if item["text"].lstrip().startswith("{") and _is_json(item["text"]) else ""
    stored = _redacted(item["text"], context)
    return stored[0] != item["text"] or (
        len(stored) > 1 and json.loads(stored[1]) != json.loads(item["text"])
    )


def _is_json(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def test_corpus_is_big_and_varied_enough() -> None:
    assert len({item["kind"] for item in SECRETS}) >= 40
    assert {item["context"] for item in SECRETS} == {"prose", "code", "shell", "json", "tool"}
    assert len(INNOCENT) >= 300
    for item in SECRETS:
        assert all(s in item["text"] for s in item["secrets"]), item


def test_recall_is_total_and_false_positives_are_rare(capsys: pytest.CaptureFixture[str]) -> None:
    missed = [(item["kind"], item["context"], _leaks(item)) for item in SECRETS if _leaks(item)]
    flagged = [item for item in INNOCENT if _changed(item)]
    recall = 1 - len(missed) / len(SECRETS)
    fp_rate = len(flagged) / len(INNOCENT)
    by_category = Counter(item["category"] for item in INNOCENT)
    wrong = Counter(item["category"] for item in flagged)
    lines = [
        f"redaction corpus: {len(SECRETS)} secrets of {len({i['kind'] for i in SECRETS})} kinds, "
        f"recall {recall:.1%}; {len(INNOCENT)} look-alikes, "
        f"false positives {len(flagged)} ({fp_rate:.1%})",
        *(
            f"  {category:12s} {n:4d} look-alikes, {wrong[category]} changed"
            for category, n in sorted(by_category.items())
        ),
    ]
    with capsys.disabled():
        sys.stdout.write("\n" + "\n".join(lines) + "\n")
    assert not missed, missed
    assert fp_rate <= 0.01, [item["text"] for item in flagged]
