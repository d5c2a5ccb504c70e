"""The terminal chat: talk to a version, say whether each answer helped, and it is recorded.

Each answer is followed by "Was this helpful? (y/n)" (only when stdin is a
terminal, or when asked for with ``--ask``); the answer and its rating go to the
same append-only record the server writes, so the next cycle learns from them.
``/quit``, ``/exit`` and Ctrl-D end the chat; ``/reset`` forgets the history.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlx_rsi.serve.engines import Engine, Generation
from mlx_rsi.serve.recorder import Recorder, new_request_id

QUIT = ("/quit", "/exit", "/q")
Read = Callable[[str], str]
Write = Callable[[str], None]


@dataclass
class ChatSession:
    engine: Engine
    version: str
    recorder: Recorder
    max_tokens: int
    system: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    answered: int = 0
    rated: int = 0

    def messages_for(self, text: str) -> list[dict[str, Any]]:
        start = [{"role": "system", "content": self.system}] if self.system else []
        return [*start, *self.history, {"role": "user", "content": text}]


def run_chat(session: ChatSession, read: Read, write: Write, *, ask: bool) -> None:
    """The read-answer-rate loop until /quit or end of input."""
    while True:
        try:
            text = read("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            write("\n")
            return
        if text in QUIT:
            return
        if text == "/reset":
            session.history.clear()
            write("(history cleared)\n")
            continue
        if not text:
            continue
        if not _turn(session, text, read, write, ask=ask):
            return


def _turn(session: ChatSession, text: str, read: Read, write: Write, *, ask: bool) -> bool:
    """One exchange; False when input ended at the rating question."""
    import threading

    messages = session.messages_for(text)
    request_id = new_request_id()
    result = Generation()
    started = time.monotonic()
    write(f"{session.version}> ")
    parts: list[str] = []
    for delta in session.engine.stream(
        messages,
        max_tokens=session.max_tokens,
        temperature=0.0,
        cancel=threading.Event(),
        result=result,
    ):
        parts.append(delta)
        write(delta)
    write("\n")
    answer = "".join(parts).strip()
    latency = round((time.monotonic() - started) * 1000, 1)
    success, more = _ask_rating(read, write) if ask else (None, True)
    metadata: dict[str, Any] = {
        "version": session.version,
        "engine": session.engine.name,
        "latency_ms": latency,
        "source": "chat",
    }
    if success is not None:
        metadata["success"] = success
        session.rated += 1
    session.recorder.record_interaction(request_id, messages, answer, metadata)
    session.answered += 1
    session.history += [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]
    return more


def _ask_rating(read: Read, write: Write) -> tuple[bool | None, bool]:
    """(rating or None when skipped, whether input goes on)."""
    while True:
        try:
            reply = read("Was this helpful? (y/n, Enter skips) ").strip().lower()
        except (EOFError, KeyboardInterrupt):
            write("\n")
            return None, False
        if reply in ("y", "yes"):
            return True, True
        if reply in ("n", "no"):
            return False, True
        if reply == "":
            return None, True
        write("please answer y or n (or press Enter to skip)\n")
