"""WorkSessionCollector: the seed's interface, append-only and safe names."""

from __future__ import annotations

import json

import pytest

from mlx_rsi.collector import WorkSessionCollector
from mlx_rsi.errors import UsageError


def test_record_appends_one_line_per_call(tmp_path):
    collector = WorkSessionCollector("recursive_v1", root=tmp_path)
    collector.record("Fix year references", "Done: replaced 2024 with 2025", {"success": True})
    path = tmp_path / "recursive_v1" / "interactions.jsonl"
    first = path.read_bytes()
    collector.record("Add docs", "Wrote README", {"success": False})
    second = path.read_bytes()
    assert second.startswith(first)  # appended, never rewritten
    lines = [json.loads(line) for line in second.decode().splitlines()]
    assert [line["user"] for line in lines] == ["Fix year references", "Add docs"]
    assert lines[0]["metadata"] == {"success": True}
    assert set(lines[0]) == {"timestamp", "user", "assistant", "metadata"}


def test_new_collector_on_same_session_keeps_old_records(tmp_path):
    WorkSessionCollector("s", root=tmp_path).record("a", "b")
    WorkSessionCollector("s", root=tmp_path).record("c", "d")
    lines = (tmp_path / "s" / "interactions.jsonl").read_text().splitlines()
    assert len(lines) == 2


def test_metadata_defaults_to_empty(tmp_path):
    record = WorkSessionCollector("s", root=tmp_path).record("a", "b")
    assert record["metadata"] == {}


@pytest.mark.parametrize(
    "name",
    ["../x", "a/../../b", "/etc/passwd", "a\0b", "", "  ", "..", "C:x", "team/alice", ".hidden"],
)
def test_names_that_are_not_plain_are_refused(tmp_path, name):
    with pytest.raises(UsageError):
        WorkSessionCollector(name, root=tmp_path)
    assert not (tmp_path.parent / "x").exists()
    assert list(tmp_path.iterdir()) == []


def test_plain_names_are_allowed(tmp_path):
    for name in ("recursive_v1", "session-2", "v1.1", "équipe"):
        WorkSessionCollector(name, root=tmp_path).record("q", "a")
        assert (tmp_path / name / "interactions.jsonl").is_file()
