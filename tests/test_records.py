"""The normalized data model: JSON round trips and the exact-duplicate key."""

from __future__ import annotations

from mlx_rsi.records import Message, Session, Signal, ToolCall, content_hash


def test_session_round_trip():
    session = Session(
        id="abc",
        source_format="collector",
        path="/x",
        messages=[
            Message("user", "hi", key="1:u"),
            Message(
                "assistant",
                "hello",
                key="1:a",
                tool_calls=[ToolCall("c1", "bash", {"cmd": "ls"})],
                signals=[Signal("feedback", True)],
            ),
        ],
    )
    assert Session.from_dict(session.to_dict()) == session


def test_content_hash_folds_whitespace_and_case():
    a = [{"role": "user", "content": "Fix  the BUG"}]
    b = [{"role": "user", "content": "fix the bug "}]
    assert content_hash(a) == content_hash(b)


def test_content_hash_sees_tool_call_arguments():
    def turn(path: str) -> list[dict]:
        call = {
            "id": "1",
            "type": "function",
            "function": {"name": "read", "arguments": {"p": path}},
        }
        return [
            {"role": "user", "content": "read it"},
            {"role": "assistant", "content": "", "tool_calls": [call]},
        ]

    assert content_hash(turn("a.py")) != content_hash(turn("b.py"))
    assert content_hash(turn("a.py")) == content_hash(turn("a.py"))
