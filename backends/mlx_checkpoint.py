"""Resumable checkpoints of the MLX backend: adapter, optimizer state, step, progress.

``checkpoints/step-<N>/`` holds ``adapters.safetensors`` + ``adapter_config.json`` (a
loadable adapter on its own), ``optimizer.safetensors`` (every optimizer tensor,
its step counter included) and ``trainer_state.json``. mlx-lm's own resume loads
the weights only (FACTS.md); this restores the whole state. The data order and the
dropout keys are functions of (seed, step), so no RNG state needs saving.
Each checkpoint folder is written under a temporary name and renamed into place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim

from backends import mlx_model, run_files
from mlx_rsi import atomic
from mlx_rsi.errors import BackendError

OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = run_files.STATE_FILE

# The MLX checkpoint records no world size: the global batches are the same for any
# number of ranks (each takes its rows of them), so a resume may change it.
TrainerState = run_files.TrainerState


def save_checkpoint(
    out_dir: Path,
    model: nn.Module,
    optimizer: optim.Optimizer,
    adapter_config: dict[str, Any],
    state: TrainerState,
) -> Path:
    """Write ``checkpoints/step-<state.step>/`` atomically and return it."""
    dst = run_files.checkpoint_dir(out_dir, state.step)
    with atomic.staged_dir(dst, replace=True) as tmp:
        mlx_model.write_adapter_files(tmp, model, adapter_config)
        mx.save_safetensors(str(tmp / OPTIMIZER_FILE), mlx_model.flat(optimizer.state))
        (tmp / STATE_FILE).write_text(state.to_json())
    return dst


def read_state(folder: Path) -> TrainerState:
    return run_files.read_state(folder, TrainerState)


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
