"""Resumable checkpoints of the PEFT backend: adapter, optimizer, progress.

``checkpoints/step-<N>/`` holds the PEFT adapter files (``adapter_model.safetensors`` +
``adapter_config.json``, loadable on their own), ``optimizer.pt`` and
``trainer_state.json`` (step, tokens, best eval, early-stopping count, the spec it ran
with and a digest of the training data). No scheduler state: the learning rate is a
function of the step (``backends.loop.learning_rate``); a ``scheduler.pt`` left by an
older version is ignored. The data order and the dropout seed are
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
from backends.adapter_settings import SETTINGS_FILE, TrainedSettings, write_settings
from mlx_rsi import atomic
from mlx_rsi.errors import BackendError

OPTIMIZER_FILE = "optimizer.pt"
SCALER_FILE = "scaler.pt"
STATE_FILE = run_files.STATE_FILE
KEEP_CHECKPOINTS = 3  # older step-<N> folders are pruned
# A finished adapter folder: PEFT's two files and the training settings beside them.
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json", SETTINGS_FILE)


@dataclass
class TrainerState(run_files.TrainerState):
    """``run_files.TrainerState`` and the number of ranks: the data order depends on it."""

    world_size: int = 1


def save_checkpoint(
    out_dir: Path,
    model: Any,
    optimizer: Any,
    state: TrainerState,
    scaler: Any = None,
) -> Path:
    """Write ``checkpoints/step-<state.step>/`` atomically, prune old ones, return it."""
    dst = run_files.checkpoint_dir(out_dir, state.step)
    with atomic.staged_dir(dst, replace=True) as tmp:
        model.save_pretrained(str(tmp))
        torch.save(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
        if scaler is not None and scaler.is_enabled():  # fp16 loss scaling (CUDA)
            torch.save(scaler.state_dict(), tmp / SCALER_FILE)
        (tmp / STATE_FILE).write_text(state.to_json())
    for _, old in run_files.list_checkpoints(out_dir)[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    return dst


def save_adapter(dst: Path, model: Any, settings: TrainedSettings) -> Path:
    """A loadable adapter folder (PEFT files + the training settings), written atomically."""
    with atomic.staged_dir(dst, replace=True) as tmp:
        model.save_pretrained(str(tmp))
        write_settings(tmp, settings)
    return dst


def read_state(folder: Path) -> TrainerState:
    return run_files.read_state(folder, TrainerState)


def check_compatible(saved: TrainerState, current: TrainerState, out_dir: Path) -> None:
    """Refuse to resume with other settings, other data or another number of ranks."""
    run_files.check_resumable(saved, current, out_dir)
    if saved.world_size != current.world_size:
        raise BackendError(
            f"cannot resume {out_dir}: the run used {saved.world_size} processes,"
            f" this one {current.world_size}",
            hint=f"relaunch with {saved.world_size} processes (the data order depends on it)",
        )


def restore_checkpoint(
    folder: Path,
    model: Any,
    optimizer: Any,
    device: torch.device,
    scaler: Any = None,
) -> TrainerState:
    """Load adapter weights and optimizer state from ``folder``."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = read_state(folder)
    try:
        weights = load_file(str(Path(folder) / "adapter_model.safetensors"), device=str(device))
        result = set_peft_model_state_dict(model, weights)
        optimizer.load_state_dict(torch.load(folder / OPTIMIZER_FILE, map_location=device))
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
