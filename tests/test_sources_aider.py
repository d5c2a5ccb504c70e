"""Aider chat history: sessions by header, blocks by marker, y/n answers, /undo, errors."""

from __future__ import annotations

from test_sources_common import AIDER, copy_fixture, ingest_in_steps, ingest_once, line_starts, row

from mlx_rsi.config import Config
from mlx_rsi.ingest import ingest
from mlx_rsi.sources.aider import READER
from mlx_rsi.workspace import Workspace

RUN = "Run shell command? (Y)es/(N)o/(D)on't ask again [Yes]"


def test_history_turns_and_signals():
    result = READER.read(AIDER)
    assert result.skipped == {}
    first, second = result.sessions
    assert (first.started_at, second.started_at) == ("2025-06-02T09:15:42", "2025-06-03T14:00:00")
    assert first.native_id.startswith("2025-06-02 09:15:42@")
    rows = [row(m, 40) for m in first.messages]
    keys = [m.key for m in first.messages]
    assert rows == [
        (keys[0], "tool", True, "/usr/local/bin/aider --model gpt-4o\nAide", [], None, False, []),
        (keys[1], "user", True, "add a --verbose flag to cli.py", [], None, False, []),
        (keys[2], "tool", True, "Add cli.py to the chat? (Y)es/(N)o/(D)on", [], None, False, []),
        (
            keys[3],
            "assistant",
            True,
            "I'll add the flag.\n\ncli.py\n```python\n<<<",
            [],
            None,
            False,
            [("correction", True, "/undo")],
        ),
        (keys[4], "tool", True, "Applied edit to cli.py\nCommit 1a2b3c4 fe", [], None, False, []),
        (keys[5], "user", False, "/undo", [], None, False, []),
        (keys[6], "tool", True, "Removed: 1a2b3c4 feat: Add --verbose fla", [], None, False, []),
        (keys[7], "user", True, "add it as -V too\nand update the README", [], None, False, []),
        (
            keys[8],
            "assistant",
            True,
            "Here are both changes.\n\nREADME.md\n```\nUs",
            [],
            None,
            False,
            [
                ("tool_error", True, "Failed to apply edit to README.md"),
                ("tool_error", True, "The LLM did not conform to the edit format."),
            ],
        ),
        (keys[9], "tool", True, "Failed to apply edit to README.md\nThe LL", [], None, True, []),
        (keys[10], "user", True, "run the tests", [], None, False, []),
        (
            keys[11],
            "assistant",
            True,
            "Run them with:\n\n```bash\npytest -q\n```",
            [],
            None,
            False,
            [("rejection", True, RUN)],
        ),
        (keys[12], "tool", True, RUN[:40], [], None, False, []),
    ]
    # the reply's code fence keeps its ">>>>>>> REPLACE" line (not taken for aider output)
    assert first.messages[3].text.endswith(">>>>>>> REPLACE\n```")
    assert first.messages[5].metadata == {"command": "/undo"}
    assert [row(m) for m in second.messages] == [
        (second.messages[0].key, "tool", True, "Aider v0.82.0", [], None, False, []),
        (second.messages[1].key, "user", True, "what does parse() return?", [], None, False, []),
        (second.messages[2].key, "assistant", True, "It returns a datetime.", [], None, False, []),
    ]


def test_history_is_found_in_a_repo_despite_the_dot_name(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ws.create()
    copy_fixture(AIDER, tmp_path)
    result = ingest(ws, Config(), [tmp_path / "logs"])
    assert result.formats == {"aider": 1}
    assert result.new_answers == 4


def test_appending_line_by_line_equals_one_clean_pass(tmp_path):
    data = AIDER.read_bytes()
    assert ingest_in_steps(tmp_path, data, AIDER.name, line_starts(data)) == ingest_once(
        tmp_path, AIDER.name
    )


def test_partial_last_line_is_left_for_the_next_pass(tmp_path):
    path = tmp_path / "h.md"
    path.write_bytes(b"# aider chat started at 2025-01-01 10:00:00\n\n#### hello\n\nHi there")
    result = READER.read(path)
    assert [m.text for m in result.sessions[0].messages] == ["hello"]
    assert result.end_offset == path.read_bytes().index(b"#### hello")
