"""Warm starts: a cycle continues from the current version instead of starting over.

Retraining from scratch on everything collected so far makes every cycle longer than
the last. With ``train.warm_start`` (default on) a cycle whose parent — the current
version — was trained with the same adapter settings starts from the parent's adapter
and trains on the examples the parent never saw (the lines of ``train.jsonl`` absent
from the parent dataset's ``train.jsonl``) plus ``train.warm_replay`` times as many of
the earlier ones, drawn deterministically, so old answers are rehearsed, not forgotten.
The usual epochs and step floor then apply to that smaller split, and the validation
split is the dataset's own. The gate still compares the result with the parent on the
held-out suite, so a warm start that forgot something is rejected like any candidate.

Nothing to continue from means a cold start, with the reason logged: no current
version, another backend or other adapter settings (``ADAPTER_FIELDS``), a missing
adapter or dataset, or no new example.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.base import TrainSpec, spec_to_dict
from mlx_rsi import atomic, registry, store
from mlx_rsi.config import TrainConfig
from mlx_rsi.workspace import Workspace

log = logging.getLogger(__name__)
WARM_DIR = "warm"  # runs/<id>/warm/: the split a warm start trains on
# What makes two adapters interchangeable: same base, shapes and prompt format.
ADAPTER_FIELDS = (
    "model_dir", "rank", "alpha", "target_modules", "num_layers", "use_dora",
    "quantize_bits", "template", "fallback_template", "train_on",
)  # fmt: skip


@dataclass(frozen=True)
class WarmStart:
    parent: str  # the version whose adapter the run starts from
    adapter: Path
    folder: Path  # train.jsonl (new + replayed) and valid.jsonl
    new: int
    replayed: int

    def summary(self) -> str:
        return f"warm start from {self.parent}: {self.new} new + {self.replayed} replayed examples"


def plan(
    ws: Workspace,
    conn: sqlite3.Connection,
    train_cfg: TrainConfig,
    spec: TrainSpec,
    *,
    backend: str,
    dataset_dir: Path,
    out_dir: Path,
) -> WarmStart | None:
    """Write the warm split into ``out_dir/warm`` and describe it, or None (cold start)."""
    if not train_cfg.warm_start or spec.resume:
        return None
    parent = _parent(ws, conn, spec, backend)
    if parent is None:
        return None
    name, adapter, parent_train = parent
    current = _lines(dataset_dir / "train.jsonl")
    seen = set(_lines(parent_train))
    new = [line for line in current if line not in seen]
    if not new:
        log.info("warm start: no example new since %s; training from scratch", name)
        return None
    old = [line for line in current if line in seen]
    count = min(len(old), math.ceil(train_cfg.warm_replay * len(new)))
    replayed = sorted(old, key=lambda line: _digest(spec.seed, line))[:count]
    folder = out_dir / WARM_DIR
    folder.mkdir(parents=True, exist_ok=True)
    mixed = sorted(new + replayed, key=lambda line: _digest(spec.seed + 1, line))
    atomic.write_bytes(folder / "train.jsonl", b"".join(line + b"\n" for line in mixed))
    valid = dataset_dir / "valid.jsonl"
    if valid.is_file():
        shutil.copyfile(valid, folder / "valid.jsonl")
    warm = WarmStart(name, adapter, folder, len(new), len(replayed))
    atomic.write_text(folder / "warm.json", json.dumps(_record(warm), indent=1) + "\n")
    log.info("%s", warm.summary())
    return warm


def resumed(out_dir: Path) -> WarmStart | None:
    """The warm start an interrupted run began with (its split is kept in its folder)."""
    path = out_dir / WARM_DIR / "warm.json"
    if not path.is_file():
        return None
    raw = json.loads(path.read_text())
    return WarmStart(raw["parent"], Path(raw["adapter"]), out_dir / WARM_DIR, raw["new"],
                     raw["replayed"])  # fmt: skip


def _parent(
    ws: Workspace, conn: sqlite3.Connection, spec: TrainSpec, backend: str
) -> tuple[str, Path, Path] | None:
    """The current version's name, adapter and training split, when they fit ``spec``."""
    name = registry.current_version(conn)
    version = registry.get_version(conn, name) if name else None
    if version is None or not version.run_id or not version.dataset:
        return None
    run = store.get_run(conn, version.run_id)
    parent_spec = store.get_run_spec(conn, version.run_id)
    why = _unusable(run, parent_spec, spec, backend)
    train = ws.datasets_dir / version.dataset / "train.jsonl"
    if why is None and not train.is_file():
        why = f"its dataset {version.dataset} is gone"
    if why is not None:
        log.info("warm start: not from %s (%s); training from scratch", name, why)
        return None
    assert run is not None and run.adapter_dir is not None
    return version.name, run.adapter_dir, train


def _unusable(
    run: store.RunRow | None, parent: dict[str, Any] | None, spec: TrainSpec, backend: str
) -> str | None:
    if run is None or run.adapter_dir is None or parent is None:
        return "its run is not recorded"
    if run.backend != backend:
        return f"trained with {run.backend}, this run uses {backend}"
    now = spec_to_dict(spec)
    changed = [k for k in ADAPTER_FIELDS if parent.get(k) != now.get(k)]
    if changed:
        return f"other adapter settings: {', '.join(changed)}"
    if not run.adapter_dir.is_dir():
        return f"its adapter {run.adapter_dir} is gone"
    return None


def _lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line.strip()]


def _digest(seed: int, line: bytes) -> str:
    return hashlib.sha256(str(seed).encode() + b"\0" + line).hexdigest()


def _record(warm: WarmStart) -> dict[str, Any]:
    return {"parent": warm.parent, "adapter": str(warm.adapter), "new": warm.new,
            "replayed": warm.replayed}  # fmt: skip
