"""The daemon's small state file, for `mlx-rsi watch status` and across restarts.

``<workspace>/daemon/state.json`` says what the daemon is doing, why it waits,
its last cycle and its next trigger; it is rewritten atomically on every change
so a reader never sees half of it. ``counted.json`` keeps the keys of examples
that already counted toward a cycle (see :mod:`mlx_rsi.daemon.triggers`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlx_rsi import atomic
from mlx_rsi.workspace import now_iso


def daemon_dir(root: Path) -> Path:
    return root / "daemon"


def state_path(root: Path) -> Path:
    return daemon_dir(root) / "state.json"


def read_state(root: Path) -> dict[str, Any] | None:
    """The last state the daemon wrote, or None (never ran, or unreadable)."""
    try:
        data = json.loads(state_path(root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass
class DaemonState:
    """What the daemon is doing now; ``update`` writes it out."""

    root: Path
    values: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        previous = read_state(self.root) or {}
        self.values = {  # what an earlier daemon learnt stays until this one knows better
            **{k: v for k, v in previous.items() if k not in ("stage", "updated_at")},
            "pid": os.getpid(),
            "state": "starting",
            "since": now_iso(),
            "reason": "",
        }

    def get(self, key: str) -> Any:
        return self.values.get(key)

    def update(self, **values: Any) -> None:
        if "state" in values and values["state"] != self.values.get("state"):
            values.setdefault("since", now_iso())
        self.values.update(values)
        self.values["updated_at"] = now_iso()
        data = json.dumps(self.values, indent=2, sort_keys=True, default=str) + "\n"
        atomic.write_text(state_path(self.root), data)


def read_counted(root: Path) -> set[str]:
    try:
        data = json.loads((daemon_dir(root) / "counted.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    return {str(k) for k in data} if isinstance(data, list) else set()


def write_counted(root: Path, keys: set[str]) -> None:
    atomic.write_text(daemon_dir(root) / "counted.json", json.dumps(sorted(keys)) + "\n")
