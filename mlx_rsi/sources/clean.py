"""Text cleaning every reader's output gets before it is stored.

Tool output and hook messages are captured from terminals: colour codes and
cursor moves (ANSI escape sequences) would reach the dataset as noise the model
learns to emit. They are removed from every message's text at ingest, in one
place, so each reader only has to be faithful to its format. A text without an
escape character is left untouched (one fast ``in`` test per text).
"""

from __future__ import annotations

import re

from mlx_rsi.records import Session

# CSI sequences (ESC [ … final byte, or the one-byte C1 form), OSC strings (ESC ] …
# BEL / ST, e.g. terminal titles and hyperlinks), and two-byte ESC sequences.
_ANSI = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[@-Z\\-_]"
)


def strip_ansi(text: str) -> str:
    """``text`` without terminal escape sequences."""
    if "\x1b" not in text and "\x9b" not in text:
        return text
    return _ANSI.sub("", text)


def clean_session(session: Session) -> None:
    """Remove terminal escapes from every message text and signal detail (in place)."""
    for message in session.messages:
        if "\x1b" in message.text:  # UTF-8 terminals write ESC [, not the C1 byte
            message.text = _ANSI.sub("", message.text)
        if message.signals:
            for signal in message.signals:
                signal.detail = strip_ansi(signal.detail)
