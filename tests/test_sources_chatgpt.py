"""ChatGPT export: the active branch from current_node, tool calls, images, thumbs."""

from __future__ import annotations

from test_sources_common import CHATGPT, by_native, row

from mlx_rsi.sources.chatgpt import READER


def test_active_branch_tools_and_feedback():
    result = READER.read(CHATGPT)
    assert result.replace
    assert result.skipped == {"unknown_schema": 1}  # the entry without a mapping
    sessions = by_native(result.sessions)
    assert set(sessions) == {"conv-1", "conv-2"}
    first = sessions["conv-1"]
    assert (first.title, first.started_at) == ("Regex for dates", "2025-06-01T10:00:00+00:00")
    assert first.metadata == {"model": "gpt-4o"}
    assert [row(m) for m in first.messages] == [
        ("ctx1", "system", False, "I write Python.\n\nBe brief.", [], None, False, []),
        ("u1", "user", True, "Write a regex for ISO dates", [], None, False, []),
        # a1 was regenerated into a1b: only the branch that leads to current_node is kept
        ("a1b", "assistant", True, "Use ^\\d{4}-\\d{2}-\\d{2}$ with anchors.", [], None, False, []),
        ("u2", "user", True, "Now validate the day range", [], None, False, []),
        ("a2", "assistant", True, "", [("a2", "python")], None, False, []),
        ("t2", "tool", True, "ValueError: day is out of range for month", [], "a2", False, []),
        (
            "a3",
            "assistant",
            True,
            "fromisoformat rejects 2025-02-30, so use it after the regex.",
            [],
            None,
            False,
            [("feedback", True, "chatgpt thumbsup")],
        ),
        ("u3", "user", True, "<IMAGE>\nHere is my test output", [], None, False, []),
        # a4 (hidden reasoning) is not a turn
        ("a5", "assistant", True, "The screenshot shows the test passing.", [], None, False, []),
    ]
    assert first.messages[4].tool_calls[0].arguments.startswith("import datetime")
    assert first.messages[5].name == "python"
    second = sessions["conv-2"]
    # feedback without a message id lands on the conversation's last answer
    assert [row(m) for m in second.messages] == [
        ("b1", "user", True, "What is 2+2?", [], None, False, []),
        (
            "b2",
            "assistant",
            True,
            "5",
            [],
            None,
            False,
            [("feedback", False, "chatgpt thumbsdown")],
        ),
    ]
