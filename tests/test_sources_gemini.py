"""Gemini CLI sessions: .json and .jsonl (in-place updates, $set, $rewindTo), sub-agents."""

from __future__ import annotations

import json

from test_sources_common import GEMINI_JSON, GEMINI_JSONL, GEMINI_SUB, copy_fixture, row

from mlx_rsi.config import Config
from mlx_rsi.ingest import ingest
from mlx_rsi.records import session_id
from mlx_rsi.session_store import load_sessions
from mlx_rsi.sources.gemini import READER
from mlx_rsi.workspace import Workspace


def test_json_session_turns_tools_and_signals():
    result = READER.read(GEMINI_JSON)
    assert result.replace and result.skipped == {}
    (session,) = result.sessions
    assert session.native_id == "abcd1234-1111-2222-3333-444455556666"
    assert session.title == "Listing and cleaning python files"
    assert session.metadata == {"projectHash": "9f86d081"}
    assert [row(m) for m in session.messages] == [
        ("m1", "user", True, "list the python files", [], None, False, []),
        (
            "m2",
            "assistant",
            True,
            "",
            [("glob-1", "glob")],
            None,
            False,
            [("tool_success", True, "glob")],
        ),
        ("m2:glob-1", "tool", True, "cli.py\nparser.py", [], "glob-1", False, []),
        ("m3", "assistant", True, "There are two: cli.py and parser.py.", [], None, False, []),
        ("m4", "user", True, "delete parser.py", [], None, False, []),
        (
            "m5",
            "assistant",
            True,
            "",
            [("shell-1", "run_shell_command")],
            None,
            False,
            [("rejection", True, "")],
        ),
        (
            "m5:shell-1",
            "tool",
            True,
            "[Operation Cancelled] Reason: User cancelled the operation.",
            [],
            "shell-1",
            True,
            [],
        ),
        # m6 (type info) is not a turn
        ("m7", "user", False, "/stats", [], None, False, []),
        ("m8", "user", True, "read config.toml", [], None, False, []),
        (
            "m9",
            "assistant",
            True,
            "",
            [("read-1", "read_file")],
            None,
            False,
            [("tool_error", True, "read_file: File not found: /srv/app/config.toml")],
        ),
        ("m9:read-1", "tool", True, "File not found: /srv/app/config.toml", [], "read-1", True, []),
        (
            "m10",
            "assistant",
            True,
            "[API Error: 429 Resource exhausted]",
            [],
            None,
            False,
            [("api_error", True, "[API Error: 429 Resource exhausted]")],
        ),
    ]
    assert session.messages[1].reasoning == "Listing: Use glob."
    assert session.messages[1].tool_calls[0].arguments == {"pattern": "**/*.py"}
    assert session.messages[1].metadata == {"model": "gemini-2.5-pro"}


def test_jsonl_session_applies_updates_set_and_rewind():
    result = READER.read(GEMINI_JSONL)
    (session,) = result.sessions
    assert result.end_offset == GEMINI_JSONL.stat().st_size
    assert session.title == "Type hints for cli.py"  # from $set
    assert session.project == "/srv/app"
    assert [row(m) for m in session.messages] == [
        ("n1", "user", True, "add type hints to cli.py", [], None, False, []),
        # n2 was written twice: the second line (status success, with its result) wins
        (
            "n2",
            "assistant",
            True,
            "Adding them.",
            [("edit-1", "replace")],
            None,
            False,
            [("tool_success", True, "replace")],
        ),
        (
            "n2:edit-1",
            "tool",
            True,
            "Successfully modified file: cli.py (1 replacements).",
            [],
            "edit-1",
            False,
            [],
        ),
        # n3 and n4 were rewound
        ("n5", "user", True, "no, only cli.py please", [], None, False, []),
        ("n6", "assistant", True, "Understood, only cli.py.", [], None, False, []),
    ]


def test_subagent_points_at_its_parent_session():
    (sub,) = READER.read(GEMINI_SUB).sessions
    assert sub.parent_id == session_id(
        "gemini", str(GEMINI_JSONL), "ef567890-aaaa-bbbb-cccc-ddddeeeeffff"
    )
    assert [m.text for m in sub.messages] == ["Summarize cli.py", "It parses arguments."]


def test_rewritten_session_replaces_what_was_stored(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ws.create()
    path = copy_fixture(GEMINI_JSONL, tmp_path)
    first = ingest(ws, Config(), [path])
    assert (first.new_messages, first.new_answers) == (5, 2)
    with path.open("a") as handle:
        handle.write(json.dumps({"$rewindTo": "n5"}) + "\n")
        handle.write(
            json.dumps({"id": "n7", "type": "user", "content": "only cli.py please"}) + "\n"
        )
    second = ingest(ws, Config(), [path])
    assert second.new_messages == 1  # n7; n5 and n6 are gone, nothing is duplicated
    with ws.store() as conn:
        (session,) = load_sessions(conn)
    assert [m.key for m in session.messages] == ["n1", "n2", "n2:edit-1", "n7"]
    # the correction ("no, …") went with the rewound prompt
    assert all(s.kind != "correction" for m in session.messages for s in m.signals)
