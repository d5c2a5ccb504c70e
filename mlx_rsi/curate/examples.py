"""Sessions → candidate training examples (one per request the person typed).

A *turn* (an *interaction* in what the CLI prints, as in ``ingest`` and ``sessions
list``) starts at a prompt the person typed (role ``user``, ``typed``) and holds
every assistant message, tool call and tool result until the next typed message.
Injected texts (``typed`` False: AGENTS.md, ``<command-name>`` echoes, compaction
summaries) are never trained; reasoning is not included.

The example for a turn is its request and the full answer (tool calls and results
included). Earlier turns are added as context, untrained (``"weight": 0``), when the
turns belong together: the person's request follows an answer they corrected,
rejected or interrupted (the new request repairs the old one), plus the last
``curate.context_turns`` turns when configured. Context never exceeds
``curate.max_context_messages`` messages; long tool results are cut to
``curate.max_tool_result_chars``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from mlx_rsi.config import CurateConfig
from mlx_rsi.records import Example, Message, Session

# A request following an answer with one of these signals continues that turn.
_CONTINUES = frozenset({"correction", "rejection", "interrupt"})


@dataclass
class Turn:
    """One request and everything the assistant did for it."""

    index: int
    request: Message
    replies: list[Message] = field(default_factory=list)

    @property
    def answers(self) -> list[Message]:
        return [m for m in self.replies if m.role == "assistant"]

    def signal_kinds(self) -> set[str]:
        return {s.kind for m in self.answers for s in m.signals}


def split_turns(session: Session) -> list[Turn]:
    """The session's turns, in order (messages before the first request are skipped)."""
    turns: list[Turn] = []
    for message in session.messages:
        if message.role == "user" and message.typed:
            turns.append(Turn(len(turns), message))
        elif turns and message.role in ("assistant", "tool"):
            turns[-1].replies.append(message)
    return turns


def session_examples(session: Session, cfg: CurateConfig, dropped: Counter[str]) -> list[Example]:
    """One example per turn with a usable answer; reasons for the others in ``dropped``."""
    turns = split_turns(session)
    examples = []
    for turn in turns:
        reason = _unusable(turn)
        if reason:
            dropped[reason] += 1
            continue
        context = _context_turns(turns, turn, cfg)
        messages = _context_messages(context, cfg) + _turn_messages(turn, cfg, trained=True)
        if messages[-1]["role"] == "user":  # its only answer was a call left unanswered
            dropped["no_answer"] += 1
            continue
        examples.append(
            Example(
                messages=messages,
                session_id=session.id,
                source_format=session.source_format,
                signals=[
                    {"kind": s.kind, "value": s.value, "detail": s.detail}
                    for m in turn.answers
                    for s in m.signals
                ],
                provenance={
                    "turn": turn.index,
                    "keys": [turn.request.key, *(m.key for m in turn.replies)],
                },
            )
        )
    return examples


def count_turns(session: Session) -> int:
    return len(split_turns(session))


def _unusable(turn: Turn) -> str | None:
    if not turn.request.text.strip():
        return "empty_request"
    if "api_error" in turn.signal_kinds():
        return "api_error"
    answers = turn.answers
    if not any(m.text.strip() or m.tool_calls for m in answers):
        return "no_answer"
    return None


def _context_turns(turns: list[Turn], turn: Turn, cfg: CurateConfig) -> list[Turn]:
    """Earlier turns this one belongs with, oldest first, within the message budget."""
    chosen: list[Turn] = []
    budget = cfg.max_context_messages
    for offset, earlier in enumerate(reversed(turns[: turn.index]), start=1):
        belongs = offset <= cfg.context_turns or bool(earlier.signal_kinds() & _CONTINUES)
        size = 1 + len(earlier.replies)
        if not belongs or size > budget:
            break
        chosen.insert(0, earlier)
        budget -= size
    return chosen


def _context_messages(context: list[Turn], cfg: CurateConfig) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for turn in context:
        messages.extend(_turn_messages(turn, cfg, trained=False))
    return messages


def _turn_messages(turn: Turn, cfg: CurateConfig, *, trained: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"role": "user", "content": turn.request.text}]
    for message in turn.replies:
        if message.role == "tool":
            out.append(_tool_message(message, cfg))
            continue
        entry = _assistant_message(message)
        previous = out[-1]
        if previous["role"] == "assistant" and not previous.get("tool_calls"):
            _merge_assistant(previous, entry)
        else:
            out.append(entry)
    _drop_unanswered_tail(out)
    if not trained:
        for entry in out:
            if entry["role"] == "assistant":
                entry["weight"] = 0
    return out


def _drop_unanswered_tail(out: list[dict[str, Any]]) -> None:
    """An example never ends on tool calls whose results are missing (interrupted, cut off).

    The calls are removed from the last answer; an answer left without text goes too.
    """
    while len(out) > 1 and out[-1]["role"] == "assistant" and out[-1].get("tool_calls"):
        del out[-1]["tool_calls"]
        if out[-1]["content"].strip():
            return
        out.pop()


def _assistant_message(message: Message) -> dict[str, Any]:
    entry: dict[str, Any] = {"role": "assistant", "content": message.text}
    if message.tool_calls:
        entry["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
    return entry


def _merge_assistant(previous: dict[str, Any], entry: dict[str, Any]) -> None:
    texts = [t for t in (previous["content"], entry["content"]) if t.strip()]
    previous["content"] = "\n\n".join(texts)
    if entry.get("tool_calls"):
        previous["tool_calls"] = entry["tool_calls"]


def _tool_message(message: Message, cfg: CurateConfig) -> dict[str, Any]:
    text = message.text
    limit = cfg.max_tool_result_chars
    if limit and len(text) > limit:
        text = f"{text[:limit]}\n… [{len(text) - limit} more characters cut]"
    entry: dict[str, Any] = {"role": "tool", "content": text}
    if message.tool_call_id:
        entry["tool_call_id"] = message.tool_call_id
    return entry
