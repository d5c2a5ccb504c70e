"""A session's strings, found by one traversal, redacted and written back.

:func:`session_slots` is the only walk over a :class:`~mlx_rsi.records.Session`: it
lists every string slot (project, title, metadata, each message's text, reasoning,
tool-call arguments, signal details and metadata; JSON values to any depth) once,
in a fixed order. The pre-scan reads the slots' texts, the rewrite writes into the
same slots, and the replacement of secret values found elsewhere walks the same
list again, so the scan and the rewrite can never disagree about which string is
which.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from mlx_rsi.redact.keyed import hidden_by_key
from mlx_rsi.redact.placeholders import secret_placeholder
from mlx_rsi.redact.prescan import Hints
from mlx_rsi.redact.redactor import Redactor, redactor_for
from mlx_rsi.redact.rules import replace_values

if TYPE_CHECKING:
    from mlx_rsi.config import CurateConfig
    from mlx_rsi.records import Session

MEMO_MIN_CHARS = 256  # texts this long are redacted once per session (files read twice)


class Slot(NamedTuple):
    """Where one string of a session lives: an object's attribute or a container's
    item, with the string found there by the walk. ``hidden``: it sits under a
    secret-looking key (``password``, ``DB_TOKEN``) and is replaced whole."""

    holder: Any
    key: Any
    text: str
    hidden: bool = False

    def set(self, value: str) -> None:
        if isinstance(self.holder, dict | list):
            self.holder[self.key] = value
        else:
            setattr(self.holder, self.key, value)


def session_slots(session: Session) -> list[Slot]:
    """Every string slot of ``session``, in a fixed order (see the module docstring)."""
    slots = [
        Slot(session, attribute, value)
        for attribute in ("project", "title")
        if isinstance(value := getattr(session, attribute), str)
    ]
    slots.extend(_json_slots(session.metadata))
    for message in session.messages:
        slots.append(Slot(message, "text", message.text))
        if message.reasoning:
            slots.append(Slot(message, "reasoning", message.reasoning))
        for call in message.tool_calls:
            if isinstance(call.arguments, str):
                slots.append(Slot(call, "arguments", call.arguments))
            else:
                slots.extend(_json_slots(call.arguments))
        slots.extend(Slot(signal, "detail", signal.detail) for signal in message.signals)
        slots.extend(_json_slots(message.metadata))
    return slots


def _json_slots(value: Any) -> Iterator[Slot]:
    """The string slots inside a JSON container (dicts and lists, to any depth)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str):
                yield Slot(value, key, item, hidden_by_key(key, item))
            else:
                yield from _json_slots(item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, str):
                yield Slot(value, index, item)
            else:
                yield from _json_slots(item)


def redact_session(session: Session, cfg: CurateConfig) -> Counter[str]:
    """Redact a session in place; return the replacements per kind.

    Covers every slot :func:`session_slots` lists (a value under a secret-looking
    key such as ``password`` is replaced whole). Secret values found anywhere in the
    session are then replaced wherever else they occur in it (an ``env`` dump
    followed by the bare value in a command line, a file read twice …).
    """
    slots = session_slots(session)
    texts = [slot.text for slot in slots]
    run = _SessionRedaction(redactor_for(cfg), texts)
    outputs = [run.hide(i) if slot.hidden else run.fix(i) for i, slot in enumerate(slots)]
    values = sorted(run.found, key=len, reverse=True)
    stored = "\0".join(outputs)
    if any(value in stored for value in values):  # else the second pass changes nothing
        outputs = [replace_values(text, values, run.found, run.counts) for text in outputs]
    for slot, text, new in zip(slots, texts, outputs, strict=True):
        if new is not text:
            slot.set(new)
    return run.counts


class _SessionRedaction:
    """Redaction of a session's texts, the i-th with the pre-scan's i-th hints.

    Texts of :data:`MEMO_MIN_CHARS`+ characters are redacted once per session
    (Claude Code repeats file contents); secret values found anywhere are collected
    in ``found``.
    """

    def __init__(self, redactor: Redactor, texts: list[str]) -> None:
        plan = redactor.session_hints(texts)
        self.hints: list[Hints | None] | None = None if plan is None else plan[0]
        self.redactor = redactor.for_texts(texts) if plan is None else redactor.with_users(plan[1])
        self.texts = texts
        # without hints, the anchors present in the session narrow each text's checks
        self.anchors = redactor.anchors_in("\0".join(texts)) if self.hints is None else None
        self.counts: Counter[str] = Counter()
        self.found: dict[str, str] = {}
        self.memo: dict[str, tuple[str, Counter[str]]] = {}

    def fix(self, index: int) -> str:
        text = self.texts[index]
        hints: Hints | bool | None = False if self.hints is None else self.hints[index]
        if hints is None:
            return text  # the pre-scan found nothing any stage could change
        if len(text) < MEMO_MIN_CHARS:
            return self._counted(self._redact(text, hints))
        done = self.memo.get(text)
        if done is None:
            done = self.memo[text] = self._redact(text, hints)
        return self._counted(done)

    def hide(self, index: int) -> str:
        """A value under a secret-looking key: typed by a rule, else replaced whole."""
        value = self.texts[index]
        new = self.fix(index)
        if new != value:  # a rule already typed it (e.g. a GitHub token under "token")
            return new
        self.counts["keyed_secret"] += 1
        if len(value) >= 8:
            self.found.setdefault(value, "keyed_secret")
        return secret_placeholder("keyed_secret")

    def _counted(self, result: tuple[str, Counter[str]]) -> str:
        if result[1]:
            self.counts.update(result[1])
        return result[0]

    def _redact(self, text: str, hints: Hints | bool) -> tuple[str, Counter[str]]:
        if isinstance(hints, Hints):
            return self.redactor.redact_hinted(text, self.found, hints)
        return self.redactor.redact(text, self.found, anchors=self.anchors)
