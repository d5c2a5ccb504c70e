"""Use feeds training: chat (through a pseudo-terminal), run-tasks and feedback reach curation."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from serve_support import register_versions

from mlx_rsi.serve.recorder import Recorder, new_request_id, read_records


def _read_until(fd: int, needle: str, timeout: float = 240.0) -> str:
    seen = ""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        if time.monotonic() > deadline:
            raise AssertionError(f"never saw {needle!r}; screen so far: {seen[-500:]!r}")
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            try:
                seen += os.read(fd, 4096).decode("utf-8", "replace")
            except OSError:
                break
    return seen


def _spawn_chat(workspace: Path) -> tuple[subprocess.Popen[bytes], int]:
    leader, follower = pty.openpty()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlx_rsi", "--workspace", str(workspace), "chat"],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        close_fds=True,
    )
    os.close(follower)
    return proc, leader


@pytest.mark.slow
def test_chat_in_a_terminal_records_the_yes_no_rating(tmp_path: Path, tiny_llama_dir: Path) -> None:
    ws = register_versions(tmp_path / "ws", tiny_llama_dir, ["v1.1"])
    proc, fd = _spawn_chat(ws.root)
    try:
        _read_until(fd, "you> ")
        os.write(fd, b"first question\n")
        _read_until(fd, "Was this helpful?")
        os.write(fd, b"y\n")
        _read_until(fd, "you> ")
        os.write(fd, b"second question\n")
        _read_until(fd, "Was this helpful?")
        os.write(fd, b"n\n")
        _read_until(fd, "you> ")
        os.write(fd, b"/quit\n")
        _read_until(fd, "2 answers recorded, 2 rated")
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        os.close(fd)
    records = read_records(ws.sessions_dir)
    assert [(r["user"], r["metadata"]["success"]) for r in records] == [
        ("first question", True),
        ("second question", False),
    ]
    assert records[1]["metadata"]["history"][0] == {"role": "user", "content": "first question"}
    assert all(r["metadata"]["source"] == "chat" for r in records)


@pytest.mark.slow
def test_chat_ends_cleanly_on_ctrl_d(tmp_path: Path, tiny_llama_dir: Path) -> None:
    ws = register_versions(tmp_path / "ws", tiny_llama_dir, ["v1.1"])
    proc, fd = _spawn_chat(ws.root)
    try:
        _read_until(fd, "you> ")
        os.write(fd, b"\x04")
        _read_until(fd, "0 answers recorded")
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        os.close(fd)


def test_piped_chat_answers_each_line_without_asking(cli, tiny_llama_dir: Path) -> None:  # type: ignore[no-untyped-def]
    ws = register_versions(cli.workspace, tiny_llama_dir, ["v1.1"])
    result = cli("chat", "--max-tokens", "3", input="one\ntwo\n/quit\nthree\n")
    assert result.exit_code == 0, result.output
    assert "helpful" not in result.output
    assert [r["user"] for r in read_records(ws.sessions_dir)] == ["one", "two"]


def test_run_tasks_judges_records_and_prints_a_table(
    cli, tmp_path: Path, tiny_llama_dir: Path
) -> None:  # type: ignore[no-untyped-def]
    ws = register_versions(cli.workspace, tiny_llama_dir, ["v1.1", "v1.2"])
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text(
        "cases:\n"
        "  - input: say anything\n    category: general\n"
        "    assert: [{type: not-contains, value: 'zzz-never-zzz'}]\n"
        "  - input: say the magic word\n    expected: [zzz-never-zzz]\n"
    )
    result = cli("run-tasks", str(tasks), "--version", "v1.1", "--max-tokens", "4")
    assert result.exit_code == 0, result.output
    assert "1/2 judged tasks passed" in result.output
    records = read_records(ws.sessions_dir)
    assert [r["metadata"]["success"] for r in records] == [True, False]
    assert {r["metadata"]["version"] for r in records} == {"v1.1"}
    plain = tmp_path / "plain.yaml"
    plain.write_text("- just a request\n")
    result = cli("run-tasks", str(plain), "--max-tokens", "2")
    assert result.exit_code == 0 and "1 recorded without assertions" in result.output
    assert "success" not in read_records(ws.sessions_dir)[-1]["metadata"]


@pytest.mark.parametrize(
    ("content", "message"),
    [("cases:\n  - category: x\n", "input"), ("{", "cannot read"), ("", "empty")],
)
def test_run_tasks_bad_file_is_one_line(cli, tmp_path: Path, content: str, message: str) -> None:  # type: ignore[no-untyped-def]
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text(content)
    code, _out, err = cli.main("run-tasks", str(tasks))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def _served(recorder: Recorder, user: str, answer: str) -> str:
    request_id = new_request_id()
    recorder.record_interaction(
        request_id,
        [{"role": "user", "content": user}],
        answer,
        {"version": "v1.1", "latency_ms": 5.0},
    )
    return request_id


def _feedback_by_answer(workspace: Path) -> dict[str, list[object]]:
    import sqlite3

    conn = sqlite3.connect(workspace / "state.db")
    found: dict[str, list[object]] = {}
    for (data,) in conn.execute("SELECT data FROM messages WHERE role = 'assistant'"):
        message = json.loads(data)
        found[message["text"]] = [s["value"] for s in message["signals"] if s["kind"] == "feedback"]
    conn.close()
    return found


def test_feedback_given_after_an_ingest_still_reaches_the_answer(cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("init").exit_code == 0
    recorder = Recorder(cli.workspace / "sessions")
    good = _served(recorder, "How do I list files in Python?", "Use pathlib.Path.iterdir().")
    bad = _served(recorder, "How do I delete a branch?", "Reinstall git.")
    _served(recorder, "Unrated question?", "Unrated answer.")
    assert cli("ingest").exit_code == 0
    assert recorder.record_feedback(good, True, "worked")
    assert recorder.record_feedback(bad, False)
    result = cli("ingest")
    assert result.exit_code == 0, result.output
    signals = _feedback_by_answer(cli.workspace)
    assert signals["Use pathlib.Path.iterdir()."] == [True]
    assert signals["Reinstall git."] == [False]
    assert signals["Unrated answer."] == []
    assert cli("ingest").exit_code == 0  # idempotent: nothing doubled
    assert _feedback_by_answer(cli.workspace) == signals
    result = cli("curate")
    assert result.exit_code == 0, result.output
    import sqlite3

    conn = sqlite3.connect(cli.workspace / "state.db")
    kept = " ".join(row[0] for row in conn.execute("SELECT data FROM examples"))
    conn.close()
    assert "pathlib.Path.iterdir" in kept
    assert "Reinstall git" not in kept
