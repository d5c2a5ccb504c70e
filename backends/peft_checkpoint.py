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

import hashlib
import json
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from backends.base import TrainSpec
from mlx_rsi import atomic
from mlx_rsi.errors import BackendError

OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
SCALER_FILE = "scaler.pt"
STATE_FILE = "trainer_state.json"
BEST_DIR = "best"
KEEP_CHECKPOINTS = 3  # older step-<N> folders are pruned
_STEP_DIR = re.compile(r"^step-(\d+)$")

# Settings a resumed run must share with the run it continues (epochs/max_steps may grow).
RESUME_FIELDS = (
    "model_dir", "rank", "alpha", "dropout", "target_modules", "num_layers", "use_dora",
    "quantize_bits", "learning_rate", "schedule", "warmup_ratio", "batch_size", "grad_accum",
    "cutoff_len", "seed", "precision", "template", "fallback_template", "train_on",
)  # fmt: skip


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
    world_size: int = 1
    data_digest: str = ""
    spec: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


def spec_record(spec: TrainSpec) -> dict[str, Any]:
    """The spec as plain JSON values (paths as strings, tuples as lists)."""
    record = asdict(spec)
    return json.loads(json.dumps(record, default=str))


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


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
    model: Any,
    optimizer: Any,
    scheduler: Any,
    state: TrainerState,
    scaler: Any = None,
) -> Path:
    """Write ``checkpoints/step-<state.step>/`` atomically, prune old ones, return it."""
    dst = checkpoint_dir(out_dir, state.step)
    with atomic.staged_dir(dst) as tmp:
        model.save_pretrained(str(tmp))
        torch.save(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
        torch.save(scheduler.state_dict(), tmp / SCHEDULER_FILE)
        if scaler is not None and scaler.is_enabled():  # fp16 loss scaling (CUDA)
            torch.save(scaler.state_dict(), tmp / SCALER_FILE)
        (tmp / STATE_FILE).write_text(state.to_json())
    for _, old in list_checkpoints(out_dir)[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    return dst


def save_best(out_dir: Path, model: Any, state: TrainerState) -> Path:
    """The adapter of the best evaluation so far, in ``checkpoints/best/``."""
    dst = Path(out_dir) / "checkpoints" / BEST_DIR
    with atomic.staged_dir(dst) as tmp:
        model.save_pretrained(str(tmp))
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


def check_compatible(state: TrainerState, spec: TrainSpec, digest: str, world: int) -> None:
    """Refuse to resume with other settings, other data or another number of ranks."""
    now = spec_record(spec)
    changed = [k for k in RESUME_FIELDS if state.spec.get(k) != now.get(k)]
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


def prune_incomplete(out_dir: Path) -> None:
    """Remove leftovers of a checkpoint write that was killed midway (temp folders)."""
    root = Path(out_dir) / "checkpoints"
    if root.is_dir():
        for child in root.iterdir():
            if child.name.startswith(".") and child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
