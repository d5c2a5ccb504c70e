"""Outcome signals on assistant turns: shared helpers and the generic correction pass.

Readers attach what their format states explicitly (tool errors, rejections with the
typed reason, interrupts, API errors, thumbs, y/n answers). After reading, ingest
runs :func:`apply_generic_signals` on every session: a person's next typed message
that starts with (or, for phrases of several words, contains early on) one of the
configured correction phrases marks the answer before it as corrected.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from mlx_rsi.records import Message, Session, Signal, SignalKind

# Only the start of a message is searched for multi-word phrases: a correction comes first.
CORRECTION_WINDOW = 200
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})


def add_signal(
    message: Message, kind: SignalKind, value: bool | float | None = True, detail: str = ""
) -> None:
    """Attach a signal once (same kind and detail are not repeated)."""
    for existing in message.signals:
        if existing.kind == kind and existing.detail == detail:
            return
    message.signals.append(Signal(kind, value, detail))


def is_dropped(message: Message) -> bool:
    """True for an assistant message that is an API error, not an answer."""
    return any(s.kind == "api_error" for s in message.signals)


def previous_answer(messages: Sequence[Message], index: int) -> Message | None:
    """The assistant message a person's message at ``index`` responds to.

    Walks back over tool results and injected (not typed) messages; stops at an
    earlier typed user message (then there is no answer in between).
    """
    for message in reversed(messages[:index]):
        if message.role == "assistant":
            return message
        if message.role == "user" and message.typed:
            return None
    return None


def normalize(text: str) -> str:
    return " ".join(text.translate(_QUOTES).lower().split())


def find_correction(text: str, phrases: Sequence[str]) -> str | None:
    """The correction phrase ``text`` opens with (or contains early on), or None.

    A phrase of one word ("wrong", "revert") must open the message; a longer one
    ("doesn't work", "that's wrong", "no, ") may also appear within its first
    CORRECTION_WINDOW characters as a whole phrase.
    """
    head = normalize(text[: CORRECTION_WINDOW * 2])[:CORRECTION_WINDOW].lstrip(" \"'>*-")
    for phrase, wanted, anywhere in _compiled(tuple(phrases)):
        if _opens_with(head, wanted):
            return phrase
        if anywhere is not None and anywhere.search(head):
            return phrase
    return None


@functools.lru_cache(maxsize=16)
def _compiled(phrases: tuple[str, ...]) -> tuple[tuple[str, str, re.Pattern[str] | None], ...]:
    """Each phrase, normalized, with its "anywhere" pattern when it has several words."""
    compiled = []
    for phrase in phrases:
        wanted = normalize(phrase) + (" " if phrase.endswith(" ") else "")
        if wanted.strip():
            anywhere = _anywhere(wanted) if " " in wanted.strip() else None
            compiled.append((phrase, wanted, anywhere))
    return tuple(compiled)


def _opens_with(head: str, phrase: str) -> bool:
    if not head.startswith(phrase):
        return False
    rest = head[len(phrase) :]
    return not rest or not phrase[-1].isalnum() or not rest[0].isalnum()


def _anywhere(phrase: str) -> re.Pattern[str]:
    pattern = r"(?<![\w'])" + re.escape(phrase.strip())
    if phrase[-1].isalnum():
        pattern += r"(?!\w)"
    if phrase.endswith(" "):
        pattern += r"\s"
    return re.compile(pattern)


def apply_generic_signals(session: Session, phrases: Sequence[str]) -> None:
    """Mark answers corrected by the person's next typed message."""
    if not phrases:
        return
    messages = session.messages
    for index, message in enumerate(messages):
        if message.role != "user" or not message.typed or not message.text:
            continue
        phrase = find_correction(message.text, phrases)
        if phrase is None:
            continue
        answer = previous_answer(messages, index)
        if answer is not None:
            add_signal(answer, "correction", True, phrase.strip())


def signal_counts(messages: Sequence[Message]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for message in messages:
        for signal in message.signals:
            counts[signal.kind] = counts.get(signal.kind, 0) + 1
    return counts
