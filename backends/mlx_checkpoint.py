"""Resumable checkpoints of the MLX backend: adapter, optimizer state, step, progress.

``checkpoints/step-<N>/`` holds ``adapters.safetensors`` + ``adapter_config.json`` (a
loadable adapter on its own), ``optimizer.safetensors`` (every optimizer tensor,
its step counter included) and ``trainer_state.json``. mlx-lm's own resume loads
the weights only (FACTS.md); this restores the whole state. The data order and the
dropout keys are functions of (seed, step), so no RNG state needs saving.
Each checkpoint folder is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim

from backends import mlx_model
from mlx_rsi import atomic
from mlx_rsi.errors import BackendError

OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "trainer_state.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")


@dataclass
class TrainerState:
    """Progress that must survive an interruption (everything but tensors)."""

    step: int = 0
    trained_tokens: int = 0
    elapsed: float = 0.0
    best_val_loss: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0
    last_loss: float | None = None
    data_digest: str = ""
    spec: dict[str, Any] | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


def checkpoint_dir(out_dir: Path, step: int) -> Path:
    return Path(out_dir) / "checkpoints" / f"step-{step}"


def list_checkpoints(out_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``out_dir`` as (step, folder), oldest first."""
    root = Path(out_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and (child / STATE_FILE).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(out_dir: Path) -> Path:
    """The newest complete checkpoint; raises when there is none to resume."""
    found = list_checkpoints(out_dir)
    if not found:
        raise BackendError(
            f"nothing to resume: no checkpoint under {Path(out_dir) / 'checkpoints'}",
            hint="start the run without --resume, or point at the run folder that was interrupted",
        )
    return found[-1][1]


def save_checkpoint(
    out_dir: Path,
    model: nn.Module,
    optimizer: optim.Optimizer,
    adapter_config: dict[str, Any],
    state: TrainerState,
) -> Path:
    """Write ``checkpoints/step-<state.step>/`` atomically and return it."""
    dst = checkpoint_dir(out_dir, state.step)
    with atomic.staged_dir(dst) as tmp:
        mlx_model.write_adapter_files(tmp, model, adapter_config)
        mx.save_safetensors(str(tmp / OPTIMIZER_FILE), mlx_model.flat(optimizer.state))
        (tmp / STATE_FILE).write_text(state.to_json())
    return dst


def read_state(folder: Path) -> TrainerState:
    try:
        raw = json.loads((Path(folder) / STATE_FILE).read_text())
        return TrainerState(**raw)
    except (OSError, json.JSONDecodeError, TypeError) as e:
        raise BackendError(
            f"checkpoint {folder} is unreadable: {e}",
            hint="delete that checkpoint folder to resume from the previous one",
        ) from e


def restore_checkpoint(folder: Path, model: nn.Module, optimizer: optim.Optimizer) -> TrainerState:
    """Load adapter weights and optimizer state from ``folder``; returns its progress."""
    state = read_state(folder)
    mlx_model.load_adapter_weights(model, folder)
    saved = mlx_model.load_tensors(Path(folder) / OPTIMIZER_FILE)
    optimizer.init(model.trainable_parameters())
    current = mlx_model.flat(optimizer.state)
    if set(saved) != set(current):
        raise BackendError(
            f"optimizer state in {folder} does not match this model's adapter",
            hint="resume with the same LoRA settings the run started with",
        )
    for path, value in saved.items():
        _assign(optimizer.state, path, value)
    return state


def _assign(tree: Any, path: str, value: mx.array) -> None:
    """Set the leaf at a dotted ``tree_flatten`` path inside a nested dict/list tree."""
    *parents, leaf = path.split(".")
    node = tree
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(leaf)] = value
    else:
        node[leaf] = value
