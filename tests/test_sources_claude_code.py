"""Claude Code transcripts: exact turns, tool pairs, branches, sidechains and signals."""

from __future__ import annotations

import json

from test_sources_common import (
    CLAUDE,
    CLAUDE_AGENT,
    by_native,
    copy_fixture,
    ingest_in_steps,
    ingest_once,
    line_starts,
    row,
)

from mlx_rsi.config import Config
from mlx_rsi.ingest import ingest
from mlx_rsi.records import session_id
from mlx_rsi.session_store import load_sessions
from mlx_rsi.sources.claude_code import READER
from mlx_rsi.workspace import Workspace

REJECTION = "The user doesn't want to proceed with this tool use. The tool use was rejected"


def test_main_session_turns_tools_and_signals():
    result = READER.read(CLAUDE)
    assert result.skipped == {"unknown_record_type": 1}
    sessions = by_native(result.sessions)
    assert set(sessions) == {"0b7e4c2a-session", "0b7e4c2a-session:task:toolu_08"}
    main = sessions["0b7e4c2a-session"]
    assert main.title == "date parser fix"  # custom-title wins over the summary
    assert main.project == "/home/alice/proj"
    assert main.started_at == "2025-06-01T10:00:00.000Z"
    assert main.metadata == {
        "sessionId": "0b7e4c2a-session",
        "gitBranch": "main",
        "version": "1.0.80",
    }
    assert [row(m, 40) for m in main.messages] == [
        ("u1", "user", True, "The date parser accepts 2025-02-30, fix ", [], None, False, []),
        (
            "m:msg_01",
            "assistant",
            True,
            "Let me look at the parser.",
            [("toolu_01", "Read")],
            None,
            False,
            [],
        ),
        (
            "r:toolu_01",
            "tool",
            True,
            "def parse(s):\n    return re.match(PATTER",
            [],
            "toolu_01",
            False,
            [],
        ),
        (
            "m:msg_02",
            "assistant",
            True,
            "",
            [("toolu_02", "Bash")],
            None,
            False,
            [("tool_error", True, "Bash: Exit code 1")],
        ),
        (
            "r:toolu_02",
            "tool",
            True,
            "Exit code 1\nFAILED tests/test_parser.py:",
            [],
            "toolu_02",
            True,
            [],
        ),
        (
            "m:msg_03",
            "assistant",
            True,
            "",
            [("toolu_03", "Edit")],
            None,
            False,
            [("rejection", True, "use dateutil instead of a regex")],
        ),
        ("r:toolu_03", "tool", True, REJECTION[:40], [], "toolu_03", True, []),
        (
            "m:msg_04",
            "assistant",
            True,
            "I'll use dateutil.",
            [("toolu_04", "Edit")],
            None,
            False,
            [],
        ),
        (
            "r:toolu_04",
            "tool",
            True,
            "The file /home/alice/proj/parser.py has ",
            [],
            "toolu_04",
            False,
            [],
        ),
        ("m:msg_05", "assistant", True, "Done: the parser now uses dateutil.", [], None, False, []),
        # u2 ("that's wrong…") and its answer were abandoned: the prompt was edited into u2b
        ("u2b", "user", True, "Please add a regression test for 2025-02", [], None, False, []),
        (
            "m:msg_07",
            "assistant",
            True,
            "Running the tests now.",
            [("toolu_05", "Bash")],
            None,
            False,
            [("interrupt", True, "[Request interrupted by user for tool use]")],
        ),
        (
            "r:toolu_05",
            "tool",
            True,
            "[Request interrupted by user for tool us",
            [],
            "toolu_05",
            True,
            [],
        ),
        ("u3", "user", False, "[Request interrupted by user for tool us", [], None, False, []),
        ("u4", "user", True, "here is the failure\n\n<IMAGE>", [], None, False, []),
        (
            "m:msg_08",
            "assistant",
            True,
            'API Error: 529 {"type":"error","error":{',
            [],
            None,
            False,
            [
                (
                    "api_error",
                    True,
                    'API Error: 529 {"type":"error","error":{"type":"overloaded_error"}}',
                )
            ],
        ),
        ("u5", "user", False, "Caveat: The messages below were generate", [], None, False, []),
        ("u6", "user", False, "<command-name>/compact</command-name>\n<c", [], None, False, []),
        ("c1", "user", False, "This session is being continued from a p", [], None, False, []),
        ("u7", "user", True, "Now update the changelog", [], None, False, []),
        (
            "m:msg_09",
            "assistant",
            True,
            "",
            [("toolu_06", "Read"), ("toolu_07", "Read")],
            None,
            False,
            [],
        ),
        ("r:toolu_06", "tool", True, "# Changelog", [], "toolu_06", False, []),
        ("r:toolu_07", "tool", True, "# Changes", [], "toolu_07", False, []),
        (
            "m:msg_10",
            "assistant",
            True,
            "Let me ask a helper to find the callers.",
            [("toolu_08", "Task")],
            None,
            False,
            [],
        ),
        (
            "r:toolu_08",
            "tool",
            True,
            "Found 3 callers: cli.py, api.py, jobs.py",
            [],
            "toolu_08",
            False,
            [],
        ),
        ("m:msg_11", "assistant", True, "Changelog updated.", [], None, False, []),
        ("u8", "user", True, "wrong file, the project uses CHANGES.md", [], None, False, []),
    ]
    first = main.messages[1]
    assert first.reasoning == "Read the parser first."  # thinking block of the split message
    assert first.tool_calls[0].arguments == {"file_path": "/home/alice/proj/parser.py"}
    assert first.metadata == {"model": "claude-sonnet-4"}
    assert main.messages[18].metadata == {"compact_summary": True}
    assert "iVBORw0KGgo" not in json.dumps(main.to_dict())  # the image's base64 is not kept


def test_inline_sidechain_is_its_own_session_pointing_at_the_main_one():
    sessions = by_native(READER.read(CLAUDE).sessions)
    main, side = sessions["0b7e4c2a-session"], sessions["0b7e4c2a-session:task:toolu_08"]
    assert side.parent_id == main.id
    assert side.title is None
    assert [row(m) for m in side.messages] == [
        ("s1", "user", False, "Find all callers of parse()", [], None, False, []),
        (
            "m:msg_s1",
            "assistant",
            True,
            "Found 3 callers: cli.py, api.py, jobs.py.",
            [],
            None,
            False,
            [],
        ),
    ]


def test_subagent_file_points_at_the_main_transcript():
    (agent,) = READER.read(CLAUDE_AGENT).sessions
    assert agent.native_id == "agent-a1b2c3"
    assert agent.parent_id == session_id("claude_code", str(CLAUDE), "0b7e4c2a-session")
    assert [row(m) for m in agent.messages] == [
        ("g1", "user", False, "List the tests that touch parse()", [], None, False, []),
        ("m:msg_g1", "assistant", True, "", [("toolu_g1", "Grep")], None, False, []),
        ("r:toolu_g1", "tool", True, "tests/test_parser.py", [], "toolu_g1", False, []),
        ("m:msg_g2", "assistant", True, "Only tests/test_parser.py.", [], None, False, []),
    ]


def test_next_pass_starts_at_the_last_typed_prompt():
    data = CLAUDE.read_bytes()
    result = READER.read(CLAUDE)
    assert data[result.end_offset :].startswith(b'{"parentUuid":"a14"')  # u8's line
    assert result.carry == {"prompt": "u8", "last": "u8", "scanned": len(data)}


def test_correction_reaches_the_answer_through_ingest(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ws.create()
    ingest(ws, Config(), [copy_fixture(CLAUDE, tmp_path)])
    with ws.store() as conn:
        main = next(s for s in load_sessions(conn) if s.native_id == "0b7e4c2a-session")
    answer = next(m for m in main.messages if m.key == "m:msg_11")
    assert [(s.kind, s.detail) for s in answer.signals] == [("correction", "wrong")]
    # the abandoned "that's wrong" prompt marked nothing
    done = next(m for m in main.messages if m.key == "m:msg_05")
    assert done.signals == []
    # redaction ran before storing: the home path in the tool call is gone
    read = next(m for m in main.messages if m.key == "m:msg_01")
    assert "/home/alice" not in json.dumps(read.tool_calls[0].arguments)


def test_appending_line_by_line_equals_one_clean_pass(tmp_path):
    data = CLAUDE.read_bytes()
    steps = ingest_in_steps(tmp_path, data, CLAUDE.name, line_starts(data))
    assert steps == ingest_once(tmp_path, CLAUDE.name)


def test_any_single_cut_equals_one_clean_pass(tmp_path):
    data = CLAUDE.read_bytes()
    starts = line_starts(data)
    cuts = [*starts[::3], starts[5] + 17, starts[20] + 3]  # some mid-line: partial lines wait
    clean = None
    for cut in cuts:
        steps = ingest_in_steps(tmp_path, data, CLAUDE.name, [cut])
        clean = clean or ingest_once(tmp_path, CLAUDE.name)
        assert steps == clean, f"cut at {cut}"


def test_prompt_edited_far_back_rereads_the_file(tmp_path):
    lines = CLAUDE.read_bytes().splitlines(keepends=True)
    edit = json.loads(lines[1])
    edit.update(uuid="u-redo", parentUuid="a7", timestamp="2025-06-01T10:10:00.000Z")
    edit["message"]["content"] = "Start over: keep the regex but check the day range"
    data = b"".join(lines) + json.dumps(edit).encode() + b"\n"
    steps = ingest_in_steps(tmp_path, data, CLAUDE.name, [len(b"".join(lines))])
    assert steps == ingest_once(tmp_path, CLAUDE.name)
    main = next(s for s in steps if s["native_id"] == "0b7e4c2a-session")
    keys = [m["key"] for m in main["messages"]]
    assert keys[-2:] == ["m:msg_05", "u-redo"]  # everything after a7 on the old branch is gone
    assert "u2b" not in keys and "u8" not in keys
