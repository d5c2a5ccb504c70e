"""The normalized data model every stage speaks (DESIGN.md, "Data model").

Readers in ``mlx_rsi.sources`` turn each log format into :class:`Session`
objects; curation turns sessions into :class:`Example` objects. Everything here
is plain data that round-trips through JSON (``to_dict`` / ``from_dict``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]

# Kinds of outcome signals attached to assistant turns (FORMATS.md "Signals").
SignalKind = Literal[
    "feedback",  # explicit: seed metadata.success, thumbs, y/n; value True/False
    "tool_error",  # a tool call made in this turn failed (is_error, non-zero exit, status error)
    "tool_success",  # a tool call made in this turn reported success (exit 0, "Success.")
    "rejection",  # the person refused a tool call; detail holds their typed reason
    "interrupt",  # the person interrupted the turn
    "correction",  # the person's next message corrects this answer; detail holds the phrase
    "api_error",  # the turn is an API error, not a real answer: dropped by curation
]


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: Any = field(default_factory=dict)  # a JSON value, usually an object


@dataclass
class Signal:
    kind: SignalKind
    value: bool | float | None = None
    detail: str = ""


@dataclass
class Message:
    role: Role
    text: str = ""
    # Stable identity within its session (native id, or offset-derived): ingest
    # upserts by (session id, key), which makes re-reading a file idempotent.
    key: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None  # on role "tool": the call this answers
    name: str | None = None  # on role "tool": the tool's name when known
    is_error: bool = False
    timestamp: str | None = None
    # False for texts the person did not type (injected context, meta, summaries).
    typed: bool = True
    reasoning: str | None = None  # thinking blocks; kept, never trained by default
    weight: float | None = None  # OpenAI fine-tuning weight (0 = do not train)
    signals: list[Signal] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)  # format-specific extras

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        values = dict(data)
        values["tool_calls"] = [ToolCall(**c) for c in values.get("tool_calls", [])]
        values["signals"] = [Signal(**s) for s in values.get("signals", [])]
        return cls(**values)


@dataclass
class Session:
    id: str
    source_format: str
    path: str
    native_id: str = ""
    started_at: str | None = None
    project: str | None = None
    title: str | None = None
    parent_id: str | None = None  # sidechains / subagents point at their main session
    messages: list[Message] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Session:
        values = dict(data)
        values["messages"] = [Message.from_dict(m) for m in values.get("messages", [])]
        return cls(**values)


def session_id(source_format: str, path: str, native_id: str = "") -> str:
    """A stable id from where a session came from: same file + native id → same id."""
    digest = hashlib.sha256(f"{source_format}\0{path}\0{native_id}".encode()).hexdigest()
    return digest[:16]


@dataclass
class Example:
    """One training unit: chat messages, with what curation learnt about it."""

    messages: list[dict[str, Any]]  # chat format: {"role", "content", ["tool_calls"], ...}
    session_id: str
    score: float = 1.0
    category: str = "general"
    source_format: str = ""
    signals: list[dict[str, Any]] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)  # file, message keys
    redactions: dict[str, int] = field(default_factory=dict)  # placeholder kind -> count
    origin: str = "session"  # session | variation | identity | replay | paraphrase

    @property
    def content_hash(self) -> str:
        return content_hash(self.messages)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Example:
        return cls(**data)


def normalize_text(text: str) -> str:
    """Whitespace-folded, lower-cased text: the exact-duplicate key's basis."""
    return " ".join(text.split()).lower()


def content_hash(messages: list[dict[str, Any]]) -> str:
    """The exact-duplicate key: roles, folded texts and tool calls (name + arguments)."""
    parts = []
    for m in messages:
        text = normalize_text(str(m.get("content") or ""))
        calls = [_call_key(c) for c in m.get("tool_calls") or []]
        parts.append(f"{m.get('role', '')}:{text}:{json.dumps(calls, sort_keys=True)}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _call_key(call: dict[str, Any]) -> list[Any]:
    function = call.get("function", call)
    return [function.get("name"), function.get("arguments")]
