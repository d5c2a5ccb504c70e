"""Resumable checkpoints of the PEFT backend: adapter, optimizer, scheduler, progress.

``checkpoints/step-<N>/`` holds the PEFT adapter files (``adapter_model.safetensors`` +
``adapter_config.json``, loadable on their own), ``optimizer.pt``, ``scheduler.pt`` and
``trainer_state.json`` (step, tokens, best eval, early-stopping count, the spec it ran
with and a digest of the training data). The data order and the dropout seed are
functions of (seed, step) (``backends.torch_data``), so no RNG state needs saving.
Each folder is written under a temporary name and renamed into place: a folder that
exists is complete.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from backends import run_files
from backends.base import TrainSpec, spec_to_dict
from mlx_rsi import atomic
from mlx_rsi.errors import BackendError

OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
SCALER_FILE = "scaler.pt"
STATE_FILE = run_files.STATE_FILE
BEST_DIR = "best"
KEEP_CHECKPOINTS = 3  # older step-<N> folders are pruned


@dataclass
class TrainerState(run_files.TrainerState):
    """``run_files.TrainerState`` and the number of ranks: the data order depends on it."""

    world_size: int = 1


def save_checkpoint(
    out_dir: Path,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    state: TrainerState,
    scaler: Any = None,
) -> Path:
    """Write ``checkpoints/step-<state.step>/`` atomically, prune old ones, return it."""
    dst = run_files.checkpoint_dir(out_dir, state.step)
    with atomic.staged_dir(dst, replace=True) as tmp:
        model.save_pretrained(str(tmp))
        torch.save(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
        torch.save(scheduler.state_dict(), tmp / SCHEDULER_FILE)
        if scaler is not None and scaler.is_enabled():  # fp16 loss scaling (CUDA)
            torch.save(scaler.state_dict(), tmp / SCALER_FILE)
        (tmp / STATE_FILE).write_text(state.to_json())
    for _, old in run_files.list_checkpoints(out_dir)[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    return dst


def save_best(out_dir: Path, model: Any, state: TrainerState) -> Path:
    """The adapter of the best evaluation so far, in ``checkpoints/best/``."""
    dst = run_files.checkpoints_root(out_dir) / BEST_DIR
    with atomic.staged_dir(dst, replace=True) as tmp:
        model.save_pretrained(str(tmp))
        (tmp / STATE_FILE).write_text(state.to_json())
    return dst


def read_state(folder: Path) -> TrainerState:
    return run_files.read_state(folder, TrainerState)


def check_compatible(state: TrainerState, spec: TrainSpec, digest: str, world: int) -> None:
    """Refuse to resume with other settings, other data or another number of ranks."""
    changed = run_files.changed_settings(state.spec, spec_to_dict(spec))
    if changed:
        raise BackendError(
            f"cannot resume: {', '.join(changed)} differ from the interrupted run",
            hint="resume with the settings the run started with, or start a new run",
        )
    if state.data_digest and state.data_digest != digest:
        raise BackendError(
            "cannot resume: train.jsonl changed since the run started",
            hint="resume on the same dataset version, or start a new run",
        )
    if state.world_size != world:
        raise BackendError(
            f"cannot resume: the run used {state.world_size} processes, this one {world}",
            hint=f"relaunch with {state.world_size} processes (the data order depends on it)",
        )


def restore_checkpoint(
    folder: Path,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    device: torch.device,
    scaler: Any = None,
) -> TrainerState:
    """Load adapter weights, optimizer and scheduler state from ``folder``."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = read_state(folder)
    try:
        weights = load_file(str(Path(folder) / "adapter_model.safetensors"), device=str(device))
        result = set_peft_model_state_dict(model, weights)
        optimizer.load_state_dict(torch.load(folder / OPTIMIZER_FILE, map_location=device))
        scheduler.load_state_dict(torch.load(folder / SCHEDULER_FILE, weights_only=False))
        if scaler is not None and (folder / SCALER_FILE).is_file():
            scaler.load_state_dict(torch.load(folder / SCALER_FILE))
    except (OSError, RuntimeError, ValueError, KeyError) as e:
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise BackendError(
            f"checkpoint {folder} cannot be restored: {first_line}",
            hint="resume with the same LoRA settings, or delete this checkpoint folder",
        ) from e
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise BackendError(
            f"checkpoint {folder} holds weights this adapter lacks: {unexpected[:3]}"
        )
    return state
