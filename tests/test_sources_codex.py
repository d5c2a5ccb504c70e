"""Codex CLI rollouts: injected context, grouped assistant items, both exit-code styles."""

from __future__ import annotations

from test_sources_common import CODEX, ingest_in_steps, ingest_once, line_starts, row

from mlx_rsi.sources.codex import READER


def test_rollout_turns_tools_and_signals():
    result = READER.read(CODEX)
    assert result.skipped == {"unknown_record_type": 1}
    (session,) = result.sessions
    assert session.native_id == "0199a1b2-3c4d-7e8f-9a0b-1c2d3e4f5a6b"
    assert session.project == "/home/bob/app"
    assert session.started_at == "2025-09-01T10:00:00.000Z"
    assert session.metadata == {"cli_version": "0.36.0", "branch": "main", "model": "gpt-5-codex"}
    rows = [row(m, 30) for m in session.messages]
    keys = [m.key for m in session.messages]
    assert rows == [
        (keys[0], "user", False, "<user_instructions>\n\n# AGENTS.", [], None, False, []),
        (keys[1], "user", False, "<environment_context>\n  <cwd>/", [], None, False, []),
        (keys[2], "user", True, "add a --verbose flag to the CL", [], None, False, []),
        (
            keys[3],
            "assistant",
            True,
            "",
            [("call_1", "shell")],
            None,
            False,
            [("tool_success", True, "shell")],
        ),
        ("r:call_1", "tool", True, "cli.py:3:import argparse\n", [], "call_1", False, []),
        (
            keys[5],
            "assistant",
            True,
            "",
            [("call_2", "shell")],
            None,
            False,
            [("tool_error", True, "shell: exit code 1")],
        ),
        ("r:call_2", "tool", True, "Exit code: 1\nWall time: 1.2 se", [], "call_2", True, []),
        (
            keys[7],
            "assistant",
            True,
            "",
            [("call_3", "apply_patch")],
            None,
            False,
            [("tool_success", True, "apply_patch")],
        ),
        ("r:call_3", "tool", True, "Success. Updated the following", [], "call_3", False, []),
        (keys[9], "assistant", True, "Added --verbose; tests pass.", [], None, False, []),
        (keys[10], "user", True, "that doesn't work, -v is alrea", [], None, False, []),
        (
            keys[11],
            "assistant",
            True,
            "",
            [("call_4", "shell")],
            None,
            False,
            [("rejection", True, "")],
        ),
        ("r:call_4", "tool", True, "exec command rejected by user", [], "call_4", True, []),
        (keys[13], "assistant", True, "Okay, I won't push.", [], None, False, []),
        (keys[14], "user", True, "rename it to --loud\n<IMAGE>", [], None, False, []),
        (
            keys[15],
            "assistant",
            True,
            "",
            [("call_5", "local_shell")],
            None,
            False,
            [("interrupt", True, "aborted by user after 1.0s")],
        ),
        ("r:call_5", "tool", True, "aborted by user after 1.0s", [], "call_5", True, []),
        (keys[17], "user", False, "Summary: a --verbose flag was ", [], None, False, []),
        (keys[18], "system", False, "<permissions instructions>work", [], None, False, []),
    ]
    # keys are the byte offsets of each item's first line: stable across passes
    data = CODEX.read_bytes()
    assert all(k.startswith("o") or k.startswith("r:") for k in keys)
    assert data[int(keys[2][1:]) :].startswith(b'{"timestamp":"2025-09-01T10:00:01.100Z"')
    first_answer = session.messages[3]
    assert first_answer.reasoning == "**Finding the CLI entry point**"
    assert first_answer.tool_calls[0].arguments == {
        "command": ["bash", "-lc", "rg -n argparse"],
        "workdir": "/home/bob/app",
    }
    assert session.messages[7].tool_calls[0].arguments.startswith("*** Begin Patch")


def test_next_pass_starts_at_the_last_typed_prompt_and_keeps_the_session_meta():
    data = CODEX.read_bytes()
    result = READER.read(CODEX)
    assert data[result.end_offset :].startswith(b'{"timestamp":"2025-09-01T10:02:00.000Z"')
    again = READER.read(CODEX, result.end_offset, result.carry)
    (session,) = again.sessions
    assert session.id == result.sessions[0].id
    assert session.project == "/home/bob/app"
    assert [m.key for m in session.messages] == [m.key for m in result.sessions[0].messages[14:]]


def test_appending_line_by_line_equals_one_clean_pass(tmp_path):
    data = CODEX.read_bytes()
    assert ingest_in_steps(tmp_path, data, CODEX.name, line_starts(data)) == ingest_once(
        tmp_path, CODEX.name
    )
