"""The generic correction pass and the signal helpers."""

from __future__ import annotations

import pytest

from mlx_rsi.config import SourcesConfig
from mlx_rsi.records import Message, Session
from mlx_rsi.signals import (
    CORRECTION_WINDOW,
    add_signal,
    apply_generic_signals,
    find_correction,
    is_dropped,
    previous_answer,
    signal_counts,
)

PHRASES = SourcesConfig().correction_phrases


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("that's wrong, it is 2025", "that's wrong"),
        ("That\u2019s wrong: use UTC", "that's wrong"),  # typographic apostrophe
        ("No, use the other file", "no, "),
        ("Wrong file.", "wrong"),
        ("  > revert that", "revert"),
        ("Undo it please", "undo"),
        ("the build is still failing after your change", "still failing"),
        ("Hmm, this doesn't work on Windows", "doesn't work"),
        ("It does not work", "does not work"),
        ("you broke the tests", "you broke"),
        ("Nothing changed, can you check?", None),  # "no, " needs its comma
        ("What's wrong with this function?", None),  # one-word phrases must open the message
        ("wrongly named variable, rename it", None),
        ("Reverting is fine by me", None),
        ("Please add a test", None),
        ("x" * CORRECTION_WINDOW + " that's wrong", None),  # too far into the message
    ],
)
def test_find_correction(text, phrase):
    assert find_correction(text, PHRASES) == phrase


def test_correction_marks_the_previous_answer_across_tools_and_injected_text():
    session = Session("s", "x", "p")
    session.messages = [
        Message("user", "fix the date"),
        Message("assistant", "Running tests", key="a1"),
        Message("tool", "ok", key="t1"),
        Message("assistant", "Done.", key="a2"),
        Message("user", "<system-reminder>", typed=False),
        Message("user", "that's not right, February has 28 days"),
        Message("user", "wrong again"),  # no answer between two prompts: nothing to mark
    ]
    apply_generic_signals(session, PHRASES)
    marked = [(m.key, [(s.kind, s.detail) for s in m.signals]) for m in session.messages]
    assert marked[3] == ("a2", [("correction", "that's not right")])
    assert all(not signals for key, signals in marked if key != "a2")


def test_injected_text_never_counts_as_a_correction():
    session = Session("s", "x", "p")
    session.messages = [
        Message("assistant", "Done.", key="a"),
        Message("user", "no, ", typed=False),
    ]
    apply_generic_signals(session, PHRASES)
    assert session.messages[0].signals == []


def test_empty_phrase_list_disables_the_pass():
    session = Session("s", "x", "p")
    session.messages = [Message("assistant", "Done.", key="a"), Message("user", "wrong")]
    apply_generic_signals(session, ())
    assert session.messages[0].signals == []


def test_add_signal_is_idempotent_and_helpers():
    message = Message("assistant", "x")
    add_signal(message, "tool_error", True, "Bash: exit 1")
    add_signal(message, "tool_error", True, "Bash: exit 1")
    add_signal(message, "api_error", True, "529")
    assert [(s.kind, s.detail) for s in message.signals] == [
        ("tool_error", "Bash: exit 1"),
        ("api_error", "529"),
    ]
    assert is_dropped(message)
    assert signal_counts([message, message]) == {"tool_error": 2, "api_error": 2}
    assert previous_answer([Message("user", "q")], 1) is None
