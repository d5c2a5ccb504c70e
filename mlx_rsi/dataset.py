"""Dataset versions: ``datasets/vX.Y/{train,valid,test}.jsonl`` + ``manifest.json``.

Each line is ``{"messages": [...]}`` in chat format (the backends' contract). The
folder is filled beside its final place and renamed in; ``manifest.json`` is written
last, so its presence means the dataset is complete. Same examples + same config →
byte-identical files (no timestamps inside; order from seeded hashes).

Splitting is **by session**, so no session's examples are in two splits:

- The **test set is carried forward**: when an earlier dataset exists, its
  ``test.jsonl`` is copied verbatim and examples of its test sessions are kept out of
  train and valid, so every version is measured on the same examples. The first
  dataset draws a fresh test set.
- The other sessions are ordered by a seeded hash of their id. With 3 or more:
  ``test_fraction`` of them (at least 1, none when a test set was carried) go to test,
  ``valid_fraction`` (at least 1) to valid, the rest (at least 1) to train.
- With 2 sessions: one is valid, one train, no new test set.
- With 1 session the backends still need a valid split: its examples are split
  (``valid_fraction``, at least 1) — the only case where a session spans splits,
  recorded as ``split.mode: by_example`` in the manifest. A single example is both
  train and valid (``single_example``).

Identity examples always go to train; synthesized variations and paraphrases of a
valid or test session are left out (they would only echo the held-out example).
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from mlx_rsi import atomic
from mlx_rsi.config import Config, to_plain
from mlx_rsi.errors import DatasetError, TargetExistsError
from mlx_rsi.names import check_name
from mlx_rsi.records import Example
from mlx_rsi.synth import SYNTHETIC_SESSIONS
from mlx_rsi.workspace import Workspace, now_iso, transaction

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
MANIFEST = "manifest.json"
FORMAT = "mlx-rsi-dataset/1"


@dataclass
class DatasetVersion:
    name: str
    path: Path
    manifest: dict[str, Any]

    def summary(self) -> str:
        counts = self.manifest["counts"]
        sessions = self.manifest["sessions"]
        n_sessions = len({s for split in SPLITS for s in sessions[split]} - SYNTHETIC_SESSIONS)
        carried = self.manifest["split"].get("test_from")
        test = f"test carried from {carried}" if carried else "new test set"
        return (
            f"dataset {self.name}: {counts['train']} train / {counts['valid']} valid / "
            f"{counts['test']} test examples from {n_sessions} sessions "
            f"({self.manifest['split']['mode']}, {test}) → {self.path}"
        )


@dataclass
class _Split:
    mode: str
    train: list[Example]
    valid: list[Example]
    test: list[Example]
    carried_test: list[bytes]
    test_sessions: list[str]
    left_out: int = 0
    carried_counts: dict[str, dict[str, int]] = field(default_factory=dict)


# --------------------------------------------------------------------------- build


def build_dataset(
    ws: Workspace, cfg: Config, examples: list[Example], *, name: str
) -> DatasetVersion:
    """Split ``examples``, write ``datasets/<name>/`` and register it in the state store.

    ``name`` must be a plain name (mlx_rsi.names) not used by another dataset: an
    existing dataset is never replaced. The only folder taken over is this name's own
    unregistered leftover (a build that died before registering it).
    """
    check_name(name, "dataset name")
    conn = ws.store()
    try:
        _refuse_existing(conn, ws, name)
        parent = _parent(conn, name)
        split = split_examples(examples, cfg, _carried_test(parent))
        if split.carried_test and parent is not None:  # describe the test set as its parent did
            split.carried_counts = {
                key: dict(parent[2].get(key, {}).get("test", {}))
                for key in ("categories", "origins")
            }
        final = ws.datasets_dir / name
        with atomic.staged_dir(final, replace=_own_leftover(final, name)) as folder:
            files = {
                s: _write_split(folder / f"{s}.jsonl", getattr(split, s), split, s) for s in SPLITS
            }
            manifest = build_manifest(name, parent[0] if parent else None, cfg, split, files)
            manifest["heldout_suite"] = _write_heldout_suite(conn, cfg, folder)
            atomic.write_bytes(folder / MANIFEST, _pretty(manifest))
        with transaction(conn):
            conn.execute(
                "INSERT OR REPLACE INTO datasets (name, path, parent, manifest, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (name, str(final), manifest["parent"], orjson.dumps(manifest).decode(), now_iso()),
            )
    finally:
        conn.close()
    version = DatasetVersion(name, final, manifest)
    log.info("%s", version.summary())
    return version


def _refuse_existing(conn: sqlite3.Connection, ws: Workspace, name: str) -> None:
    folder = ws.datasets_dir / name
    registered = conn.execute("SELECT 1 FROM datasets WHERE name = ?", (name,)).fetchone()
    if registered or (atomic.occupied(folder) and not _own_leftover(folder, name)):
        raise TargetExistsError(
            f"dataset '{name}' already exists ({folder})",
            hint="choose another --name; `mlx-rsi dataset list` shows the names in use",
        )


def _own_leftover(folder: Path, name: str) -> bool:
    """True for a folder this module wrote for ``name`` (its manifest says so)."""
    try:
        manifest = orjson.loads((folder / MANIFEST).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return False
    return (
        isinstance(manifest, dict)
        and manifest.get("format") == FORMAT
        and (manifest.get("name") == name)
    )


def _write_heldout_suite(conn: sqlite3.Connection, cfg: Config, folder: Path) -> dict[str, Any]:
    """Cases from the test split's requests (mlx_rsi.eval.heldout); kept in the manifest."""
    from mlx_rsi.eval.heldout import rejected_answers, write_for_dataset
    from mlx_rsi.session_store import load_sessions

    return write_for_dataset(
        folder,
        cfg,
        held_out=read_split(folder / "test.jsonl"),
        training=read_split(folder / "train.jsonl"),
        rejected=rejected_answers(load_sessions(conn), cfg),
    )


def split_examples(
    examples: list[Example],
    cfg: Config,
    carried: tuple[list[bytes], list[str]] | None = None,
) -> _Split:
    """Assign examples to splits by session (rules in the module doc)."""
    carried_lines, carried_sessions = carried or ([], [])
    held = set(carried_sessions)
    seed = cfg.curate.seed
    identity = [e for e in examples if e.session_id in SYNTHETIC_SESSIONS]  # train only
    real = [e for e in examples if e.session_id not in SYNTHETIC_SESSIONS | held]
    left_out = sum(1 for e in examples if e.session_id in held)
    sessions = sorted({e.session_id for e in real}, key=_session_order(real, seed))
    n_test, n_valid = _split_sizes(len(sessions), cfg, has_test=bool(carried_lines))
    test_ids = set(sessions[:n_test])
    valid_ids = set(sessions[n_test : n_test + n_valid])
    mode = "by_session" if len(sessions) >= 2 else "by_example"
    if mode == "by_session":
        parts = {"train": [], "valid": [], "test": []}  # type: dict[str, list[Example]]
        for example in real:
            where = (
                "test"
                if example.session_id in test_ids
                else "valid"
                if example.session_id in valid_ids
                else "train"
            )
            if where != "train" and example.origin != "session":
                left_out += 1
                continue
            parts[where].append(example)
        train, valid, test = parts["train"], parts["valid"], parts["test"]
    else:
        train, valid, mode = _split_one_session(real, identity, cfg)
        test = []
    train = train + identity
    new_test_sessions = sorted({e.session_id for e in test})
    return _Split(
        mode,
        _ordered(train, seed),
        _ordered(valid, seed),
        _ordered(test, seed),
        carried_lines,
        sorted(held) if carried_lines else new_test_sessions,
        left_out,
    )


def _split_sizes(n: int, cfg: Config, *, has_test: bool) -> tuple[int, int]:
    """(test sessions, valid sessions) for n sessions."""
    if n < 2:
        return 0, 0
    if n == 2:
        return 0, 1
    n_test = (
        0
        if has_test or cfg.curate.test_fraction == 0
        else max(1, round(n * cfg.curate.test_fraction))
    )
    n_valid = max(1, round(n * cfg.curate.valid_fraction))
    while n_test + n_valid > n - 1:
        if n_test > 0:
            n_test -= 1
        else:
            n_valid -= 1
    return n_test, n_valid


def _split_one_session(
    real: list[Example], identity: list[Example], cfg: Config
) -> tuple[list[Example], list[Example], str]:
    originals = _ordered([e for e in real if e.origin == "session"], cfg.curate.seed)
    synthetic = [e for e in real if e.origin != "session"]
    if len(originals) >= 2:
        n_valid = min(len(originals) - 1, max(1, round(len(originals) * cfg.curate.valid_fraction)))
        valid = originals[:n_valid]
        sources = {e.content_hash for e in valid}
        train = originals[n_valid:] + [
            e for e in synthetic if e.provenance.get("source") not in sources
        ]
        return train, valid, "by_example"
    pool = originals or identity
    if not pool:
        raise DatasetError(
            "no examples to build a dataset from",
            hint="ingest sessions first (`mlx-rsi ingest`), then `mlx-rsi curate`",
        )
    return originals + synthetic, [pool[0]], "single_example"


def _ordered(examples: Iterable[Example], seed: int) -> list[Example]:
    return sorted(
        examples, key=lambda e: (_hash(seed, f"{e.content_hash}\0{e.origin}"), e.session_id)
    )


def _session_order(examples: list[Example], seed: int) -> Callable[[str], tuple[str, str]]:
    """Sessions in a seeded order that does not depend on where the logs live.

    Session ids hash the file's path, so ordering by them would hold out other
    sessions in another clone of the same logs; the session's first request does
    not move (appending turns to a session keeps its place).
    """
    first: dict[str, tuple[int, str]] = {}
    for e in examples:
        turn = e.provenance.get("turn")
        position = turn if isinstance(turn, int) else 1 << 30
        request = next((str(m.get("content")) for m in e.messages if m.get("role") == "user"), "")
        key = (position, request)
        if e.session_id not in first or key < first[e.session_id]:
            first[e.session_id] = key
    return lambda s: (_hash(seed, first.get(s, (0, s))[1]), s)


def _hash(seed: int, text: str) -> str:
    return hashlib.sha256(f"{seed}\0{text}".encode()).hexdigest()


# --------------------------------------------------------------------------- files


def record(example: Example) -> dict[str, Any]:
    """The JSONL record the backends read."""
    return {"messages": example.messages}


def record_line(example: Example) -> bytes:
    """One line of a split file: the same example always gives the same bytes (warm starts
    compare the lines of two datasets, and `train --estimate` drafts them the same way)."""
    return orjson.dumps(record(example), option=orjson.OPT_SORT_KEYS) + b"\n"


def _write_split(path: Path, examples: list[Example], split: _Split, name: str) -> dict[str, Any]:
    lines = [record_line(e) for e in examples]
    if name == "test" and split.carried_test:
        lines = list(split.carried_test)
    data = b"".join(lines)
    atomic.write_bytes(path, data)
    return {"examples": len(lines), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _pretty(manifest: dict[str, Any]) -> bytes:
    return orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def build_manifest(
    name: str, parent: str | None, cfg: Config, split: _Split, files: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    splits = {"train": split.train, "valid": split.valid, "test": split.test}
    everything = [e for part in splits.values() for e in part]
    return {
        "format": FORMAT,
        "name": name,
        "parent": parent,
        "split": {
            "mode": split.mode,
            "seed": cfg.curate.seed,
            "valid_fraction": cfg.curate.valid_fraction,
            "test_fraction": cfg.curate.test_fraction,
            "test_from": parent if split.carried_test else None,
            "left_out": split.left_out,
        },
        "counts": {s: files[s]["examples"] for s in SPLITS},
        "files": {f"{s}.jsonl": files[s] for s in SPLITS},
        "sessions": {
            "train": sorted({e.session_id for e in split.train}),
            "valid": sorted({e.session_id for e in split.valid}),
            "test": split.test_sessions,
        },
        "categories": {
            **{s: _count(e.category for e in part) for s, part in splits.items()},
            **({"test": split.carried_counts["categories"]} if split.carried_counts else {}),
        },
        "origins": {
            **{s: _count(e.origin for e in part) for s, part in splits.items()},
            **({"test": split.carried_counts["origins"]} if split.carried_counts else {}),
        },
        "sources": _count(e.source_format for e in everything),
        "score_buckets": _count(_bucket(e.score) for e in everything),
        "redactions": _count_weighted(e.redactions for e in everything),
        "config_hash": config_hash(cfg),
    }


def config_hash(cfg: Config) -> str:
    """Hash of the settings that shape a dataset (curate + synth sections)."""
    plain = {"curate": to_plain(cfg.curate), "synth": to_plain(cfg.synth)}
    return hashlib.sha256(orjson.dumps(plain, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _count(items: Iterable[str]) -> dict[str, int]:
    return dict(sorted(Counter(items).items()))


def _count_weighted(items: Iterable[dict[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for item in items:
        total.update(item)
    return dict(sorted(total.items()))


def _bucket(score: float) -> str:
    low = min(9, int(score * 10)) / 10
    return f"{low:.1f}-{low + 0.1:.1f}"


# --------------------------------------------------------------------------- lineage


def _parent(conn: sqlite3.Connection, name: str) -> tuple[str, Path, dict[str, Any]] | None:
    """The latest other complete dataset: its test set is carried forward."""
    from mlx_rsi.registry import parse_name

    rows = conn.execute("SELECT name, path, manifest, created_at FROM datasets").fetchall()
    candidates = []
    for row in rows:
        if row["name"] == name or not (Path(row["path"]) / MANIFEST).is_file():
            continue
        try:
            order = parse_name(row["name"])
        except Exception:  # a custom name: order by creation only
            order = (-1, -1)
        candidates.append((order, row["created_at"] or "", row))
    if not candidates:
        return None
    row = max(candidates, key=lambda c: (c[0], c[1]))[2]
    return row["name"], Path(row["path"]), orjson.loads(row["manifest"])


def _carried_test(
    parent: tuple[str, Path, dict[str, Any]] | None,
) -> tuple[list[bytes], list[str]] | None:
    if parent is None:
        return None
    name, path, manifest = parent
    test_file = path / "test.jsonl"
    sessions = list(manifest.get("sessions", {}).get("test", []))
    if not sessions or not test_file.is_file():
        return None
    lines = [line + b"\n" for line in test_file.read_bytes().splitlines() if line.strip()]
    log.info("carrying the test set of %s forward (%d examples)", name, len(lines))
    return lines, sessions


# --------------------------------------------------------------------------- finding


def find_dataset(ws: Workspace, name_or_path: str | Path) -> Path:
    """A dataset folder: a workspace dataset name, or any folder holding train.jsonl."""
    candidate = Path(name_or_path).expanduser()
    if (candidate / "train.jsonl").is_file():
        return candidate.resolve()
    named = ws.datasets_dir / str(name_or_path)
    if (named / MANIFEST).is_file() and (named / "train.jsonl").is_file():
        return named
    known = sorted(p.name for p in ws.datasets_dir.glob("*") if (p / MANIFEST).is_file())
    hint = f"known datasets: {', '.join(known)}" if known else "build one with `mlx-rsi train`"
    raise DatasetError(
        f"no dataset '{name_or_path}' (not a workspace dataset nor a folder with train.jsonl)",
        hint=hint,
    )


def list_datasets(ws: Workspace) -> list[DatasetVersion]:
    """The workspace's registered datasets, oldest first."""
    conn = ws.store()
    try:
        rows = conn.execute("SELECT name, path, manifest FROM datasets ORDER BY created_at, name")
        return [DatasetVersion(r[0], Path(r[1]), orjson.loads(r[2])) for r in rows.fetchall()]
    finally:
        conn.close()


def load_dataset(ws: Workspace, name_or_path: str | Path) -> DatasetVersion:
    path = find_dataset(ws, name_or_path)
    manifest_path = path / MANIFEST
    manifest = orjson.loads(manifest_path.read_bytes()) if manifest_path.is_file() else {}
    return DatasetVersion(manifest.get("name", path.name), path, manifest)


def read_split(path: Path) -> list[dict[str, Any]]:
    """The records of one split file (empty when it does not exist)."""
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError as e:
            raise DatasetError(
                f"{path}:{number}: not valid JSON: {e}", hint="rebuild the dataset"
            ) from e
    return records


# --------------------------------------------------------------------------- exports

EXPORT_FORMATS = ("llamafactory", "mlx", "openai")


def export_dataset(source: Path, fmt: str, out: Path, *, name: str | None = None) -> list[Path]:
    """Write the dataset at ``source`` to ``out`` in another tool's layout.

    - ``openai``: ``{split}.jsonl`` in OpenAI's fine-tuning chat format (tool-call
      arguments as JSON strings, ``weight: 0`` kept on context answers).
    - ``mlx``: an mlx-lm data folder (``{split}.jsonl`` with ``messages``).
    - ``llamafactory``: ``dataset_info.json`` plus ShareGPT files for every split and
      Alpaca files (the seed's format) for its single-request examples.
    """
    if fmt not in EXPORT_FORMATS:
        raise DatasetError(
            f"unknown export format '{fmt}'", hint=f"use one of {', '.join(EXPORT_FORMATS)}"
        )
    name = name or source.name
    splits = {s: read_split(source / f"{s}.jsonl") for s in SPLITS}
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "llamafactory":
        return _export_llamafactory(splits, out, name)
    written = []
    for split, records in splits.items():
        convert = _openai_record if fmt == "openai" else _mlx_record
        lines = [orjson.dumps(convert(r), option=orjson.OPT_SORT_KEYS) + b"\n" for r in records]
        atomic.write_bytes(out / f"{split}.jsonl", b"".join(lines))
        written.append(out / f"{split}.jsonl")
    return written


def _openai_record(record: dict[str, Any]) -> dict[str, Any]:
    messages = []
    for message in record["messages"]:
        entry = dict(message)
        if entry.get("tool_calls"):
            entry["tool_calls"] = [
                {
                    **call,
                    "function": {
                        "name": call["function"]["name"],
                        "arguments": _arguments_text(call["function"].get("arguments")),
                    },
                }
                for call in entry["tool_calls"]
            ]
        messages.append(entry)
    return {**record, "messages": messages}


def _arguments_text(arguments: Any) -> str:
    if isinstance(arguments, str):
        return arguments
    return orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS).decode()


def _mlx_record(record: dict[str, Any]) -> dict[str, Any]:
    messages = [{k: v for k, v in m.items() if k != "weight"} for m in record["messages"]]
    return {**record, "messages": messages}


def _export_llamafactory(
    splits: dict[str, list[dict[str, Any]]], out: Path, name: str
) -> list[Path]:
    info: dict[str, Any] = {}
    written = []
    for split, records in splits.items():
        if not records:
            continue
        sharegpt = f"{name}_{split}.json"
        atomic.write_bytes(out / sharegpt, _json([to_sharegpt(r) for r in records]))
        info[f"{name}_{split}"] = {
            "file_name": sharegpt,
            "formatting": "sharegpt",
            "columns": {"messages": "conversations", "system": "system"},
            "tags": {
                "role_tag": "from",
                "content_tag": "value",
                "user_tag": "human",
                "assistant_tag": "gpt",
                "observation_tag": "observation",
                "function_tag": "function_call",
                "system_tag": "system",
            },
        }
        written.append(out / sharegpt)
        alpaca_rows = [row for row in (to_alpaca(r) for r in records) if row is not None]
        if alpaca_rows:
            alpaca = f"{name}_{split}_alpaca.json"
            atomic.write_bytes(out / alpaca, _json(alpaca_rows))
            info[f"{name}_{split}_alpaca"] = {"file_name": alpaca, "formatting": "alpaca"}
            written.append(out / alpaca)
    atomic.write_bytes(out / "dataset_info.json", _json(info))
    return [out / "dataset_info.json", *written]


def _json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n"


def to_sharegpt(record: dict[str, Any]) -> dict[str, Any]:
    """A chat record as ShareGPT turns (human / gpt / function_call / observation)."""
    turns: list[dict[str, str]] = []
    system = ""
    for message in record["messages"]:
        role = message.get("role")
        content = str(message.get("content") or "")
        if role == "system":
            system = content
        elif role == "user":
            turns.append({"from": "human", "value": content})
        elif role == "tool":
            _append_turn(turns, "observation", content)
        elif message.get("tool_calls"):
            calls = [
                {"name": c["function"]["name"], "arguments": c["function"].get("arguments")}
                for c in message["tool_calls"]
            ]
            value = calls[0] if len(calls) == 1 else calls
            turns.append({"from": "function_call", "value": orjson.dumps(value).decode()})
        else:
            _append_turn(turns, "gpt", content)
    row: dict[str, Any] = {"conversations": turns}
    if system:
        row["system"] = system
    return row


def _append_turn(turns: list[dict[str, str]], role: str, content: str) -> None:
    """Consecutive turns of one role are merged (ShareGPT alternates)."""
    if turns and turns[-1]["from"] == role:
        turns[-1]["value"] = f"{turns[-1]['value']}\n\n{content}"
    else:
        turns.append({"from": role, "value": content})


def to_alpaca(record: dict[str, Any]) -> dict[str, str] | None:
    """``{instruction, input, output}`` for a one-request, no-tools record; else None."""
    messages = [m for m in record["messages"] if m.get("role") != "system"]
    if len(messages) != 2 or [m.get("role") for m in messages] != ["user", "assistant"]:
        return None
    if messages[1].get("tool_calls"):
        return None
    return {
        "instruction": str(messages[0].get("content") or ""),
        "input": "",
        "output": str(messages[1].get("content") or ""),
    }
