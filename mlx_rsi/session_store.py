"""The sessions and messages tables of the state store: every SQL statement about them.

Ingest decides *when* to write (its group commits keep each file whole or absent);
this module says *how* a session and its messages are written, dropped and read back,
so that ``ingest``, ``curate`` and the ``sessions`` command share one schema reading
instead of each holding its own queries.

Vocabulary (the same in ``ingest``, ``sessions list`` and ``curate``): a *message* is
one stored record (user, assistant, tool or system); a *prompt* is a message the
person typed; a *turn* is one assistant answer (API errors are not turns).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from mlx_rsi.errors import UsageError
from mlx_rsi.records import Message, Session
from mlx_rsi.workspace import now_iso

# Message order: seq = (byte offset the pass started at) * SEQ_STRIDE + index in the pass.
SEQ_STRIDE = 1 << 24
# Ids per ``IN (…)`` query: well under SQLite's bound-parameter limit.
ID_CHUNK = 500

# --------------------------------------------------------------------------- writing

_SESSION_UPSERT = """
INSERT INTO sessions (id, source_format, path, native_id, started_at, project, title,
                      parent_id, metadata, n_messages, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(id) DO UPDATE SET
    started_at = COALESCE(sessions.started_at, excluded.started_at),
    project = COALESCE(excluded.project, sessions.project),
    title = COALESCE(excluded.title, sessions.title),
    parent_id = COALESCE(excluded.parent_id, sessions.parent_id),
    metadata = json_patch(sessions.metadata, excluded.metadata),
    updated_at = excluded.updated_at
"""

_MESSAGE_UPSERT = """
INSERT INTO messages (session_id, key, seq, file_path, data, role, signals)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(session_id, key) DO UPDATE SET
    seq = excluded.seq, file_path = excluded.file_path, data = excluded.data,
    role = excluded.role, signals = excluded.signals
"""


def write_session(
    conn: sqlite3.Connection, session: Session, file_key: str, start: int, new: bool
) -> None:
    """Upsert a session and its messages (``new``: nothing of it is stored yet).

    Messages are ordered by ``start`` (the byte offset the pass began at) and their
    index in the pass, so a later pass's messages sort after an earlier one's.
    The caller owns the transaction.
    """
    keys = [message.key or f"#{index}" for index, message in enumerate(session.messages)]
    conn.execute(
        _SESSION_UPSERT,
        (
            session.id,
            session.source_format,
            file_key,
            session.native_id,
            session.started_at,
            session.project,
            session.title,
            session.parent_id,
            _dumps(session.metadata),
            len(set(keys)),
            now_iso(),
        ),
    )
    base = start * SEQ_STRIDE
    conn.executemany(
        _MESSAGE_UPSERT,
        [
            (
                session.id,
                keys[index],
                base + index,
                file_key,
                _dumps(message),
                message.role,
                ",".join([s.kind for s in message.signals]) if message.signals else "",
            )
            for index, message in enumerate(session.messages)
        ],
    )
    if not new:
        conn.execute(
            "UPDATE sessions SET n_messages = (SELECT COUNT(*) FROM messages WHERE session_id = ?)"
            " WHERE id = ?",
            (session.id, session.id),
        )


def drop_file(conn: sqlite3.Connection, file_key: str) -> None:
    """Forget every session and message a file contributed (it is read again whole)."""
    conn.execute("DELETE FROM messages WHERE file_path = ?", (file_key,))
    conn.execute("DELETE FROM sessions WHERE path = ?", (file_key,))


def stored_keys(conn: sqlite3.Connection, file_key: str) -> set[tuple[str, str]]:
    """(session id, message key) of every message stored from a file."""
    rows = conn.execute("SELECT session_id, key FROM messages WHERE file_path = ?", (file_key,))
    return {(r[0], r[1]) for r in rows}


def known_session_ids(conn: sqlite3.Connection, ids: Sequence[str]) -> set[str]:
    """Those of ``ids`` already stored."""
    found: set[str] = set()
    for chunk in range(0, len(ids), ID_CHUNK):
        part = list(ids[chunk : chunk + ID_CHUNK])
        marks = ",".join("?" * len(part))
        found.update(
            r[0] for r in conn.execute(f"SELECT id FROM sessions WHERE id IN ({marks})", part)
        )
    return found


def _dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


# --------------------------------------------------------------------------- reading


def load_sessions(
    conn: sqlite3.Connection, *, ids: Sequence[str] | None = None
) -> Iterator[Session]:
    """Stored sessions with their messages in order (all, oldest first, or ``ids``)."""
    if ids is None:
        rows = conn.execute("SELECT * FROM sessions ORDER BY started_at, path, id").fetchall()
    else:
        by_id = {}
        for chunk in range(0, len(ids), ID_CHUNK):
            part = list(ids[chunk : chunk + ID_CHUNK])
            marks = ",".join("?" * len(part))
            for row in conn.execute(f"SELECT * FROM sessions WHERE id IN ({marks})", part):
                by_id[row["id"]] = row
        rows = [by_id[i] for i in ids if i in by_id]
    for row in rows:
        yield _session_from_row(conn, row)


def _session_from_row(conn: sqlite3.Connection, row: sqlite3.Row) -> Session:
    messages = [
        Message.from_dict(orjson.loads(r[0]))
        for r in conn.execute(
            "SELECT data FROM messages WHERE session_id = ? ORDER BY seq", (row["id"],)
        )
    ]
    return Session(
        id=row["id"],
        source_format=row["source_format"],
        path=row["path"],
        native_id=row["native_id"] or "",
        started_at=row["started_at"],
        project=row["project"],
        title=row["title"],
        parent_id=row["parent_id"],
        messages=messages,
        metadata=orjson.loads(row["metadata"]),
    )


def find_session(conn: sqlite3.Connection, prefix: str) -> str:
    """The one session id starting with ``prefix``; a UsageError when none or several."""
    rows = conn.execute(
        "SELECT id FROM sessions WHERE id >= ? AND id < ? ORDER BY id LIMIT 6",
        (prefix, prefix + "\U0010ffff"),
    ).fetchall()
    if not rows:
        raise UsageError(
            f"no session id starts with '{prefix}'", hint="see `mlx-rsi sessions list`"
        )
    if len(rows) > 1:
        shown = ", ".join(r[0] for r in rows[:5])
        raise UsageError(
            f"session id prefix '{prefix}' is ambiguous ({shown} …)", hint="give more characters"
        )
    return str(rows[0][0])


@dataclass(frozen=True)
class SessionSummary:
    """One row of `mlx-rsi sessions list`."""

    id: str
    source_format: str
    started_at: str | None
    project: str | None
    title: str | None
    messages: int
    interactions: int  # prompts the person typed (each opens an interaction)
    answers: int  # assistant messages, API errors left out (as ingest counts them)
    signals: dict[str, int]
    parent_id: str | None


def session_summaries(
    conn: sqlite3.Connection, *, fmt: str | None = None, limit: int | None = 50
) -> list[SessionSummary]:
    """Stored sessions, newest first, with their interactions, answers and signal counts."""
    where, args = ("WHERE s.source_format = ?", [fmt]) if fmt else ("", [])
    rows = conn.execute(
        "SELECT s.id, s.source_format, s.started_at, s.project, s.title, s.n_messages,"
        " s.parent_id,"
        " (SELECT COUNT(*) FROM messages m WHERE m.session_id = s.id AND m.role = 'user'"
        "  AND json_extract(m.data, '$.typed')) AS interactions,"
        " (SELECT COUNT(*) FROM messages m WHERE m.session_id = s.id"
        "  AND m.role = 'assistant' AND ',' || m.signals || ',' NOT LIKE '%,api_error,%')"
        "  AS answers,"
        " (SELECT GROUP_CONCAT(m.signals, ',') FROM messages m WHERE m.session_id = s.id"
        "  AND m.signals != '') AS signals"
        f" FROM sessions s {where} ORDER BY s.started_at DESC, s.id LIMIT ?",
        [*args, -1 if limit is None else limit],
    )
    return [
        SessionSummary(
            id=row["id"],
            source_format=row["source_format"],
            started_at=row["started_at"],
            project=row["project"],
            title=row["title"],
            messages=row["n_messages"],
            interactions=row["interactions"],
            answers=row["answers"],
            signals=dict(Counter(k for k in (row["signals"] or "").split(",") if k)),
            parent_id=row["parent_id"],
        )
        for row in rows
    ]
