"""ATIF trajectories: the Agent Trajectory Interchange Format of harbor's RFC 0001.

Converters already turn Copilot, Cursor, OpenHands and other agents' logs into
ATIF, so one reader opens all of them. The document is parsed with the published
Pydantic models (PyPI ``atif``), never re-declared here: a trajectory that
validates is read as is; one that does not (a converter's small deviation) is read
step by step with the same models, and the steps that fail are counted as
``invalid_step`` instead of losing the whole file.

A trajectory ``{schema_version: "ATIF-v1.x", session_id, trajectory_id, agent,
steps: [{step_id, source: system|user|agent, message, reasoning_content,
tool_calls, observation: {results}}], subagent_trajectories}`` becomes:

- ``system`` steps → system messages, ``user`` steps → typed prompts, ``agent``
  steps → assistant messages (reasoning kept apart, tool calls kept), and each
  observation result → a ``tool`` message paired with its call by
  ``source_call_id``;
- steps marked ``is_copied_context`` (copied from an earlier trajectory; the RFC
  says they must not be trained on) are left out, counted as ``copied_context``;
- image content parts → ``<IMAGE>``;
- a result whose ``extra`` says it failed (``is_error``, a failing ``status``, a
  non-zero ``exit_code``) → ``tool_error`` on the step that made the call;
- embedded ``subagent_trajectories`` → sessions of their own, whose ``parent_id``
  is the trajectory that delegated to them (and whose metadata names the call).

The file is read whole on every change (``replace``): trajectories are documents.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlx_rsi.records import Message, Role, Session, ToolCall, session_id
from mlx_rsi.signals import add_signal
from mlx_rsi.sources import ReadOptions, ReadResult
from mlx_rsi.sources.document import load_document, starts_with_array, starts_with_object
from mlx_rsi.sources.jsonl import as_list

if TYPE_CHECKING:
    import atif

FORMAT = "atif"
IMAGE = "<IMAGE>"
VERSION_MARK = b'"ATIF-v'
FAILED_STATUSES = frozenset({"error", "failed", "failure", "timeout", "timed_out"})


class AtifReader:
    name = FORMAT

    def detect(self, path: Path, head: bytes) -> float:
        if not (starts_with_object(head) or starts_with_array(head)):
            return 0.0
        window = head[:16384]
        if VERSION_MARK in window and b'"steps"' in window:
            return 0.95
        return 0.0

    def read(
        self,
        path: Path,
        start: int = 0,
        carry: dict[str, Any] | None = None,
        options: ReadOptions | None = None,
    ) -> ReadResult:
        options = options or ReadOptions()
        skipped: Counter[str] = Counter()
        loaded = load_document(path, options.max_document_bytes, skipped)
        if loaded is None:
            return ReadResult([], 0, {}, skipped, replace=True)
        document, size = loaded
        sessions: list[Session] = []
        for data in document if isinstance(document, list) else [document]:
            trajectory = _trajectory(data, skipped)
            if trajectory is not None:
                _add_sessions(path, trajectory, None, {}, sessions, skipped)
        return ReadResult([s for s in sessions if s.messages], size, {}, skipped, replace=True)


# --------------------------------------------------------------------------- validation


def _trajectory(data: Any, skipped: Counter[str]) -> atif.Trajectory | None:
    """The trajectory, validated whole, else step by step (bad steps counted)."""
    # imported here, not at the top: the models pull in pydantic (about 0.5 s), a cost
    # every ingest would pay at format detection although few files are trajectories
    import atif
    import pydantic

    if not isinstance(data, dict):
        skipped["not_an_object"] += 1
        return None
    try:
        return atif.Trajectory.model_validate(data)
    except pydantic.ValidationError:
        pass
    steps = []
    for raw in as_list(data.get("steps")):
        try:
            steps.append(atif.Step.model_validate(raw))
        except pydantic.ValidationError:
            skipped["invalid_step"] += 1
    if not steps:
        skipped["unknown_schema"] += 1
        return None
    subagents = []
    for raw in as_list(data.get("subagent_trajectories")):
        sub = _trajectory(raw, skipped)
        if sub is not None:
            subagents.append(sub)
    return atif.Trajectory.model_construct(
        schema_version=str(data.get("schema_version") or ""),
        session_id=_str(data.get("session_id")),
        trajectory_id=_str(data.get("trajectory_id")),
        agent=_agent(data.get("agent")),
        steps=steps,
        subagent_trajectories=subagents or None,
        extra=data.get("extra") if isinstance(data.get("extra"), dict) else None,
    )


def _agent(raw: Any) -> atif.Agent | None:
    import atif
    import pydantic

    try:
        return atif.Agent.model_validate(raw)
    except pydantic.ValidationError:
        return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# --------------------------------------------------------------------------- building


def _add_sessions(
    path: Path,
    trajectory: atif.Trajectory,
    parent: Session | None,
    calls_by_ref: dict[str, str],
    sessions: list[Session],
    skipped: Counter[str],
) -> None:
    """The trajectory's session, then its embedded subagents' (depth first)."""
    native = trajectory.trajectory_id or trajectory.session_id or path.stem
    if parent is not None:
        native = f"{parent.native_id}/{native}"
    session = Session(
        id=session_id(FORMAT, str(path), native),
        source_format=FORMAT,
        path=str(path),
        native_id=native,
        parent_id=parent.id if parent is not None else None,
        metadata=_metadata(trajectory),
    )
    call = calls_by_ref.get(trajectory.trajectory_id or "")
    if call:
        session.metadata["tool_call_id"] = call
    refs: dict[str, str] = {}
    for step in trajectory.steps:
        if step.is_copied_context:
            skipped["copied_context"] += 1
            continue
        _add_step(session, step, refs, delegated=parent is not None)
    session.started_at = next((m.timestamp for m in session.messages if m.timestamp), None)
    sessions.append(session)
    for sub in trajectory.subagent_trajectories or []:
        _add_sessions(path, sub, session, refs, sessions, skipped)


def _metadata(trajectory: atif.Trajectory) -> dict[str, Any]:
    metadata: dict[str, Any] = {"schema_version": trajectory.schema_version}
    agent = trajectory.agent
    if agent is not None:
        metadata["agent"] = agent.name
        metadata["agent_version"] = agent.version
        if agent.model_name:
            metadata["model"] = agent.model_name
    if trajectory.session_id:
        metadata["session_id"] = trajectory.session_id
    return metadata


def _add_step(session: Session, step: atif.Step, refs: dict[str, str], delegated: bool) -> None:
    """One step's messages; a subagent's (``delegated``) user steps were not typed by a person."""
    key = f"s{step.step_id}"
    text = _content_text(step.message)
    if step.source == "agent":
        message = Message("assistant", text, key=key, timestamp=step.timestamp)
        message.reasoning = step.reasoning_content
        if step.model_name:
            message.metadata["model"] = step.model_name
        names = {}
        for call in step.tool_calls or []:
            message.tool_calls.append(
                ToolCall(call.tool_call_id, call.function_name, call.arguments)
            )
            names[call.tool_call_id] = call.function_name
        session.messages.append(message)
        _add_observation(session, step, message, names, refs)
        return
    role: Role = "system" if step.source == "system" else "user"
    if text:
        typed = role == "user" and not delegated
        session.messages.append(Message(role, text, key=key, timestamp=step.timestamp, typed=typed))
    _add_observation(session, step, None, {}, refs)


def _add_observation(
    session: Session,
    step: atif.Step,
    caller: Message | None,
    names: dict[str, str],
    refs: dict[str, str],
) -> None:
    if step.observation is None:
        return
    for index, result in enumerate(step.observation.results):
        call_id = result.source_call_id
        name = names.get(call_id or "")
        message = Message(
            "tool",
            _content_text(result.content),
            key=f"s{step.step_id}:r{index}",
            tool_call_id=call_id,
            name=name,
            timestamp=step.timestamp,
            is_error=_failed(result.extra),
        )
        for ref in result.subagent_trajectory_ref or []:
            if ref.trajectory_id and call_id:
                refs[ref.trajectory_id] = call_id
            message.metadata.setdefault("subagents", []).append(
                ref.trajectory_id or ref.trajectory_path
            )
        session.messages.append(message)
        if message.is_error and caller is not None:
            first = message.text.strip().splitlines()[0] if message.text.strip() else ""
            add_signal(caller, "tool_error", True, f"{name or 'tool'}: {first}"[:200])


def _failed(extra: dict[str, Any] | None) -> bool:
    """Whether a result's ``extra`` says the action failed (no core ATIF field does)."""
    if not extra:
        return False
    if extra.get("is_error") is True or extra.get("success") is False:
        return True
    status = extra.get("status")
    if isinstance(status, str) and status.lower() in FAILED_STATUSES:
        return True
    code = extra.get("exit_code")
    return isinstance(code, int) and not isinstance(code, bool) and code != 0


def _content_text(content: str | list[atif.ContentPart] | None) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for part in content:
        if part.type == "text" and part.text:
            texts.append(part.text)
        elif part.type == "image":
            texts.append(IMAGE)
    return "\n".join(texts)


READER = AtifReader()
