"""Format detection past a first line longer than the head (or than max_line_bytes)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from mlx_rsi.sources import HEAD_BYTES, detect_format, fitting_head

FIXTURES = Path(__file__).parent / "fixtures" / "sources"
CODEX = next((FIXTURES / "codex").rglob("*.jsonl"))


def _codex_with_huge_first_line(folder: Path) -> Path:
    """A real Codex rollout whose session_meta carries a 200 KB AGENTS.md."""
    lines = CODEX.read_text().splitlines(keepends=True)
    meta = json.loads(lines[0])
    meta["payload"]["instructions"] = "Run pytest before finishing.\n" * 7000
    path = folder / CODEX.name
    path.write_text(json.dumps(meta) + "\n" + "".join(lines[1:]))
    assert len(path.read_bytes().split(b"\n")[0]) > 3 * HEAD_BYTES
    return path


def _collector_with_huge_first_line(folder: Path) -> Path:
    path = folder / "interactions.jsonl"
    records = [{"user": "x" * 300_000, "assistant": "long", "metadata": {}}] + [
        {"user": f"question {i}", "assistant": f"answer {i}", "metadata": {"success": True}}
        for i in range(3)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.mark.parametrize(
    ("make", "expected"),
    [(_codex_with_huge_first_line, "codex"), (_collector_with_huge_first_line, "collector")],
)
def test_format_is_decided_from_the_first_lines_that_fit(tmp_path, make, expected) -> None:  # type: ignore[no-untyped-def]
    assert detect_format(make(tmp_path)) == expected


def test_unknown_stays_unknown(tmp_path: Path) -> None:
    path = tmp_path / "blob.jsonl"
    path.write_bytes(b"z" * (3 * HEAD_BYTES) + b"\nnot json either\n")
    assert detect_format(path) is None


def test_fitting_head_skips_only_long_lines(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_bytes(b"a" * 5000 + b"\nshort 1\n" + b"b" * 5000 + b"\nshort 2\nlast")
    assert fitting_head(path, limit=4096) == b"short 1\nshort 2\nlast"
    # a line that runs past a read chunk boundary is dropped whole
    path.write_bytes(b"c" * (3 << 20) + b"\nafter\n")
    assert fitting_head(path, limit=4096) == b"after\n"


def test_ingest_keeps_the_good_records(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The first line over max_line_bytes is skipped as line_too_long; the rest is stored."""
    assert cli("init", "--no-standard-sources").exit_code == 0
    (cli.workspace / "mlx-rsi.yaml").write_text("sources:\n  max_line_bytes: 65536\n")
    logs = tmp_path / "logs"
    logs.mkdir()
    _codex_with_huge_first_line(logs)
    code, out, err = cli.main("ingest", str(logs))
    assert code == 0, err
    assert "unknown_format" not in out
    assert "line_too_long 1" in out
    with sqlite3.connect(cli.workspace / "state.db") as conn:
        assert conn.execute("SELECT source_format FROM sessions").fetchall() == [("codex",)]
        assert conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0] > 2
