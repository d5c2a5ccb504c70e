"""When the daemon runs a cycle: enough new data, the cron schedule, and quiet.

A cycle is *wanted* when an interrupted one is waiting to be finished, or when
there are at least ``schedule.min_new_examples`` new high-quality examples and
(with ``schedule.cron`` set) a scheduled time has passed since the last cycle.
It *runs* only when the machine is also quiet (:mod:`mlx_rsi.daemon.quiet`).

"New" examples are the session examples curation would keep now (without
synthesis, which may need a model) whose training record is in no dataset built
so far, and that the daemon did not already count toward an earlier cycle (so a
held-out session that keeps growing cannot retrigger cycles forever).
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import orjson

from mlx_rsi.config import Config
from mlx_rsi.daemon.quiet import QuietReport
from mlx_rsi.errors import ConfigError
from mlx_rsi.workspace import Workspace

SPLIT_FILES = ("train.jsonl", "valid.jsonl", "test.jsonl")


# --------------------------------------------------------------------------- cron


def check_cron(expression: str | None) -> None:
    """A bad ``schedule.cron`` is one ConfigError line naming it."""
    if expression is None:
        return
    from croniter import croniter

    if not croniter.is_valid(expression):
        raise ConfigError(
            f"schedule.cron: '{expression}' is not a valid cron expression",
            hint='five fields "minute hour day month weekday", e.g. "0 2 * * 1" for Mondays 02:00',
        )


def next_slot(expression: str, after: datetime) -> datetime:
    from croniter import croniter

    found: datetime = croniter(expression, after).get_next(datetime)
    return found


def cron_due(expression: str | None, now: datetime, last_cycle: datetime | None) -> bool:
    """True when a scheduled time passed since the last cycle (always, without cron)."""
    if expression is None:
        return True
    if last_cycle is None:
        return True
    from croniter import croniter

    previous: datetime = croniter(expression, now).get_prev(datetime)
    return previous > last_cycle


# --------------------------------------------------------------------------- data


def example_key(messages: object) -> str:
    """The identity of a training record: the hash of its dataset JSONL line."""
    line = orjson.dumps({"messages": messages}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(line).hexdigest()[:32]


def dataset_keys(conn: sqlite3.Connection) -> set[str]:
    """Keys of every record in every dataset built so far."""
    keys: set[str] = set()
    for (path,) in conn.execute("SELECT path FROM datasets"):
        for name in SPLIT_FILES:
            keys.update(_file_keys(Path(path) / name))
    return keys


def _file_keys(path: Path) -> set[str]:
    try:
        data = path.read_bytes()
    except OSError:
        return set()
    return {hashlib.sha256(line).hexdigest()[:32] for line in data.splitlines() if line.strip()}


def candidate_keys(ws: Workspace, cfg: Config) -> set[str]:
    """Keys of the session examples curation keeps now (no synthesis, nothing stored)."""
    from mlx_rsi.curate import curate_sessions
    from mlx_rsi.session_store import load_sessions

    conn = ws.store()
    try:
        result = curate_sessions(load_sessions(conn), cfg)
    finally:
        conn.close()
    return {example_key(e.messages) for e in result.examples if e.origin == "session"}


def new_examples(ws: Workspace, cfg: Config, counted: set[str]) -> set[str]:
    """Keys of high-quality examples in no dataset yet and not in ``counted``."""
    keys = candidate_keys(ws, cfg)
    conn = ws.store()
    try:
        used = dataset_keys(conn)
    finally:
        conn.close()
    return keys - used - counted


def has_unfinished_cycle(ws: Workspace) -> bool:
    """A cycle a crash or a stop left with recorded progress (its dataset at least)."""
    from mlx_rsi.store import unfinished_cycles

    conn = ws.store()
    try:
        return any(cycle.completed for cycle in unfinished_cycles(conn))
    finally:
        conn.close()


# --------------------------------------------------------------------------- decision


@dataclass(frozen=True)
class Decision:
    """Whether to start a cycle now, and the one-line reason either way."""

    run: bool
    reason: str
    resume: bool = False


def decide(
    cfg: Config,
    *,
    unfinished: bool,
    new: int,
    due: bool,
    next_cron: datetime | None,
    quiet: QuietReport,
) -> Decision:
    schedule = cfg.schedule
    if unfinished:
        why = "an interrupted cycle is waiting to be finished"
    elif new < schedule.min_new_examples:
        return Decision(
            False, f"{new} new high-quality examples of {schedule.min_new_examples} needed"
        )
    elif not due:
        when = next_cron.isoformat(timespec="minutes") if next_cron else "?"
        return Decision(False, f"{new} new examples ready; next scheduled time {when}")
    else:
        why = f"{new} new high-quality examples (>= {schedule.min_new_examples})"
    if not quiet.quiet:
        return Decision(False, f"{why}; waiting for quiet: {', '.join(quiet.reasons)}")
    return Decision(True, why, resume=unfinished)
