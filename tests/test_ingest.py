"""ingest(): walking, incremental reads, rewrites, dry runs, redaction, bad inputs, CLI."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from mlx_rsi.config import Config, SourcesConfig, WatchedFolder
from mlx_rsi.ingest import ingest, standard_locations
from mlx_rsi.session_store import find_session, load_sessions, session_summaries
from mlx_rsi.workspace import Workspace

GITHUB_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace(tmp_path / "ws")
    workspace.create()
    return workspace


def interaction(user: str, assistant: str, **metadata: object) -> str:
    record = {"timestamp": "2025-06-01T10:00:00", "user": user, "assistant": assistant}
    record["metadata"] = metadata
    return json.dumps(record) + "\n"


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    return path


def stored(ws: Workspace) -> list[tuple[str, list[tuple[str, str, str, list[str]]]]]:
    """Sessions and their messages as comparable plain values (order, not seq)."""
    with ws.store() as conn:
        return [
            (
                s.id,
                [(m.key, m.role, m.text, sorted(x.kind for x in m.signals)) for m in s.messages],
            )
            for s in load_sessions(conn)
        ]


def texts(ws: Workspace) -> list[str]:
    return [text for _, messages in stored(ws) for _, _, text, _ in messages]


def test_ingest_folder_then_rescan_adds_nothing(ws, tmp_path):
    logs = tmp_path / "logs"
    write(logs / "a" / "interactions.jsonl", interaction("q1", "a1", success=True))
    write(logs / "b" / "interactions.jsonl", interaction("q2", "a2"))
    first = ingest(ws, Config(), [logs])
    assert (first.files_seen, first.files_read, first.new_messages, first.new_answers) == (
        2,
        2,
        4,
        2,
    )
    assert first.new_sessions == 2
    assert first.formats == {"collector": 2}
    again = ingest(ws, Config(), [logs])
    assert (again.files_read, again.files_unchanged, again.new_messages) == (0, 2, 0)
    assert "2 unchanged" in again.summary()
    with ws.store() as conn:
        sessions = list(load_sessions(conn))
        events = conn.execute("SELECT stage, status FROM events").fetchall()
    assert [m.text for m in sessions[0].messages] == ["q1", "a1"]
    assert sessions[0].messages[1].signals[0].kind == "feedback"
    assert sessions[0].messages[1].signals[0].value is True
    assert [tuple(e) for e in events] == [("ingest", "done"), ("ingest", "done")]


def test_append_reads_only_new_turns_and_equals_one_clean_pass(ws, tmp_path):
    path = write(tmp_path / "s" / "interactions.jsonl", interaction("q1", "a1"))
    ingest(ws, Config(), [path])
    with path.open("a") as handle:
        handle.write(interaction("that's wrong, use 2025", "fixed"))
    second = ingest(ws, Config(), [path])
    assert (second.new_messages, second.new_answers) == (2, 1)
    incremental = stored(ws)

    clean = Workspace(tmp_path / "clean")
    clean.create()
    ingest(clean, Config(), [path])
    assert stored(clean) == incremental
    # the correction in the appended turn reached the answer stored by the first pass
    assert incremental[0][1][1][3] == ["correction"]
    with ws.store() as conn:
        (summary,) = session_summaries(conn)
    assert (summary.messages, summary.interactions, summary.answers, summary.signals) == (
        4,
        2,
        2,
        {"correction": 1},
    )


def test_partial_last_line_waits_for_the_next_pass(ws, tmp_path):
    line = interaction("q2", "a2")
    path = write(tmp_path / "s" / "interactions.jsonl", interaction("q1", "a1") + line[:20])
    first = ingest(ws, Config(), [path])
    assert first.new_messages == 2
    assert first.skipped == {}  # a line still being written is not an error
    with path.open("a") as handle:
        handle.write(line[20:])
    second = ingest(ws, Config(), [path])
    assert second.new_messages == 2
    assert texts(ws) == ["q1", "a1", "q2", "a2"]


def test_truncate_and_rewrite_leaves_no_duplicates(ws, tmp_path):
    path = write(
        tmp_path / "s" / "interactions.jsonl",
        interaction("old question", "old answer") + interaction("q2", "a2"),
    )
    ingest(ws, Config(), [path])
    write(path, interaction("new question", "new answer"))  # shorter: truncated + rewritten
    result = ingest(ws, Config(), [path])
    assert result.files_read == 1
    assert texts(ws) == ["new question", "new answer"]
    # rewritten with the same size but other content: re-read too
    write(path, interaction("NEW QUESTION", "NEW ANSWER"))
    os.utime(path, ns=(1, 1))
    ingest(ws, Config(), [path])
    assert texts(ws) == ["NEW QUESTION", "NEW ANSWER"]


def test_replaced_file_with_new_inode_is_reread(ws, tmp_path):
    path = write(tmp_path / "s" / "interactions.jsonl", interaction("q1", "a1"))
    ingest(ws, Config(), [path])
    replacement = write(tmp_path / "other.tmp", interaction("q1", "a1") + interaction("q2", "a2"))
    os.replace(replacement, path)
    ingest(ws, Config(), [path])
    assert texts(ws) == ["q1", "a1", "q2", "a2"]


def test_dry_run_stores_nothing(ws, tmp_path):
    path = write(tmp_path / "s" / "interactions.jsonl", interaction("q1", "a1"))
    result = ingest(ws, Config(), [path], dry_run=True)
    assert (result.files_read, result.new_messages, result.new_sessions) == (1, 2, 1)
    assert result.summary().startswith("dry run")
    with ws.store() as conn:
        assert conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM files").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 0


def test_dry_run_without_a_workspace(tmp_path):
    path = write(tmp_path / "s" / "interactions.jsonl", interaction("q1", "a1"))
    result = ingest(Workspace(tmp_path / "none"), Config(), [path], dry_run=True)
    assert result.new_messages == 2
    assert not (tmp_path / "none").exists()


def test_watched_folders_resolve_against_the_workspace(ws):
    write(ws.sessions_dir / "mine" / "interactions.jsonl", interaction("q", "a"))
    cfg = Config(
        sources=SourcesConfig(
            watch=(WatchedFolder("sessions", "collector"), WatchedFolder("nowhere", "auto"))
        )
    )
    result = ingest(ws, cfg)
    assert result.files_read == 1
    assert result.missing == [str(ws.root / "nowhere")]
    assert "missing:" in result.summary()


def test_secrets_never_reach_the_store(ws, tmp_path):
    path = write(
        tmp_path / "s" / "interactions.jsonl",
        interaction(f"my token is {GITHUB_TOKEN}", "use an env var"),
    )
    result = ingest(ws, Config(), [path])
    assert sum(result.redactions.values()) >= 1
    assert "redacted" in result.summary()
    assert GITHUB_TOKEN not in json.dumps(stored(ws))
    with ws.store() as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for name in os.listdir(ws.root):
        if name.startswith("state.db"):
            assert GITHUB_TOKEN.encode() not in (ws.root / name).read_bytes()


def test_include_exclude_and_always_include(ws, tmp_path):
    logs = tmp_path / "logs"
    write(logs / "keep.jsonl", interaction("q", "a"))
    write(logs / "skip.tmp", interaction("q", "a"))
    write(logs / ".hidden.jsonl", interaction("q", "a"))
    write(logs / ".git" / "x.jsonl", interaction("q", "a"))
    write(logs / "notes.txt", "hello")
    write(logs / ".aider.chat.history.md", "# aider chat started at 2025-01-01 10:00:00\n")
    result = ingest(ws, Config(), [logs])
    paths = {Path(o.path).name for o in result.outcomes}
    assert paths == {"keep.jsonl", ".aider.chat.history.md"}


def test_bad_inputs_are_counted_per_file_and_good_records_kept(ws, tmp_path):
    logs = tmp_path / "logs"
    good = interaction("q1", "a1")
    huge = json.dumps({"user": "x" * 5000, "assistant": "y"}) + "\n"
    write(
        logs / "mixed" / "interactions.jsonl",
        good.encode()
        + b"[1, 2]\n"
        + b"{not json\n"
        + huge.encode()
        + b'{"user": "caf\xe9", "assistant": "latin-1"}\n'
        + interaction("q2", "a2").encode(),
    )
    write(logs / "blob.json", b"\x00\x01\x02binary" * 10)
    write(logs / "utf16.jsonl", ("\ufeff" + good).encode("utf-16-le"))
    write(logs / "unknown.jsonl", json.dumps({"some": "thing"}) + "\n")
    write(logs / "empty.jsonl", "")
    loop = logs / "loop"
    loop.mkdir()
    (loop / "again").symlink_to(loop)
    (logs / "self.jsonl").symlink_to(logs / "self.jsonl")
    cfg = Config(sources=SourcesConfig(max_line_bytes=1024))
    result = ingest(ws, cfg, [logs])
    by_name = {Path(p).name: dict(r) for p, r in result.skipped.items()}
    assert by_name["interactions.jsonl"] == {
        "not_an_object": 1,
        "invalid_json": 1,
        "line_too_long": 1,
        "bad_encoding": 1,
    }
    assert by_name["blob.json"] == {"binary": 1}
    assert by_name["utf16.jsonl"] == {"bad_encoding": 1}
    assert by_name["unknown.jsonl"] == {"unknown_format": 1}
    assert by_name["empty.jsonl"] == {"empty": 1}
    assert by_name["again"] == {"symlink_loop": 1}
    assert by_name["self.jsonl"] == {"symlink_loop": 1}
    assert texts(ws) == ["q1", "a1", "q2", "a2"]
    # skipped files are remembered: an unchanged rescan does not open them again
    again = ingest(ws, cfg, [logs])
    assert again.files_unchanged == 5


def test_unreadable_file_is_counted_not_fatal(ws, tmp_path):
    sock_path = tmp_path / "s.jsonl"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock_path))
    try:
        good = write(tmp_path / "g" / "interactions.jsonl", interaction("q", "a"))
        result = ingest(ws, Config(), [sock_path, good])
    finally:
        server.close()
    assert result.skipped[str(sock_path)] == {"unreadable": 1}
    assert result.new_messages == 2


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_file_without_read_permission(ws, tmp_path):
    path = write(tmp_path / "s" / "interactions.jsonl", interaction("q", "a"))
    path.chmod(0)
    try:
        result = ingest(ws, Config(), [path])
    finally:
        path.chmod(0o600)
    assert result.skipped[str(path.resolve())] == {"unreadable": 1}


def test_forced_format_and_unknown_format_name(ws, tmp_path):
    path = write(tmp_path / "x.jsonl", interaction("q", "a"))
    assert ingest(ws, Config(), [path], fmt="collector").files_read == 1
    from mlx_rsi.errors import UsageError

    with pytest.raises(UsageError, match="unknown session format 'colector'") as error:
        ingest(ws, Config(), [path], fmt="colector")
    assert error.value.hint == "did you mean 'collector'?"


def test_find_session_by_prefix(ws, tmp_path):
    write(tmp_path / "a" / "interactions.jsonl", interaction("q", "a"))
    ingest(ws, Config(), [tmp_path / "a"])
    with ws.store() as conn:
        (session,) = load_sessions(conn)
        assert find_session(conn, session.id[:6]) == session.id
        assert [s.id for s in load_sessions(conn, ids=[session.id, "nope"])] == [session.id]
        from mlx_rsi.errors import UsageError

        with pytest.raises(UsageError, match="no session"):
            find_session(conn, "zzzz")


def test_standard_locations_are_opt_in_folders(monkeypatch):
    monkeypatch.setenv("CODEX_HOME", "/x/codex")
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    folders = {f.format: f.path for f in standard_locations()}
    assert folders == {
        "claude_code": "~/.claude/projects",
        "codex": "/x/codex/sessions",
        "gemini": "~/.gemini/tmp",
    }
    assert SourcesConfig().watch == (WatchedFolder("sessions", "collector"),)


# --------------------------------------------------------------------------- CLI


def test_cli_ingest_prints_summary_and_skips(cli, tmp_path):
    assert cli("init", "--no-standard-sources").exit_code == 0
    write(tmp_path / "logs" / "a" / "interactions.jsonl", interaction("q", "a"))
    write(tmp_path / "logs" / "junk.json", b"\x00\x00")
    result = cli("ingest", str(tmp_path / "logs"))
    assert result.exit_code == 0, result.output
    assert "2 files (1 read, 0 unchanged, 1 skipped)" in result.output
    assert "2 new messages (1 interactions, 1 answers)" in result.output
    assert f"skipped in {(tmp_path / 'logs' / 'junk.json').resolve()}: binary 1" in result.output
    dry = cli("ingest", str(tmp_path / "logs"), "--dry-run")
    assert dry.exit_code == 0 and "dry run" in dry.output


def test_cli_ingest_unknown_format_is_a_usage_error(cli, tmp_path):
    assert cli("init", "--no-standard-sources").exit_code == 0
    code, _out, err = cli.main("ingest", str(tmp_path), "--format", "claude-cod")
    assert code == 2
    assert "unknown session format 'claude-cod'" in err


def test_cli_ingest_without_workspace_fails_with_hint(cli, tmp_path):
    code, _out, err = cli.main("ingest", str(tmp_path))
    assert code == 1
    assert "mlx-rsi init" in err
