"""The parts of a run folder both backends write the same way, without torch or mlx.

A run folder holds ``checkpoints/step-<N>/`` (the tensors are each backend's own; the
``trainer_state.json`` beside them is this module's ``TrainerState``), ``metrics.jsonl``
and ``tensorboard/``. Here: naming, listing and picking checkpoints, reading the
progress record, the settings a resume must keep, and ``RunLog``, which writes the
metrics and reports progress through ``on_event``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson

from backends.base import EventKind, OnEvent, TrainEvent, TrainResult
from mlx_rsi import atomic
from mlx_rsi.errors import BackendError, BackendUnavailableError

CHECKPOINTS_DIR = "checkpoints"
STATE_FILE = "trainer_state.json"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
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
    data_digest: str = ""
    spec: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    def record_eval(self, val_loss: float) -> bool:
        """Count an evaluation at this step; True when it is the best so far."""
        if self.best_val_loss is None or val_loss < self.best_val_loss:
            self.best_val_loss, self.best_step = val_loss, self.step
            self.evals_without_improvement = 0
            return True
        self.evals_without_improvement += 1
        return False

    def to_result(self, adapter_dir: Path, seconds: float, stopped_early: bool) -> TrainResult:
        return TrainResult(
            adapter_dir=adapter_dir,
            steps=self.step,
            final_loss=self.last_loss,
            best_val_loss=self.best_val_loss,
            trained_tokens=self.trained_tokens,
            seconds=seconds,
            stopped_early=stopped_early,
        )


State = TypeVar("State", bound=TrainerState)


def read_state(folder: Path, state_type: type[State]) -> State:
    """The ``trainer_state.json`` of a checkpoint folder."""
    try:
        raw = json.loads((Path(folder) / STATE_FILE).read_text())
        return state_type(**raw)
    except (OSError, json.JSONDecodeError, TypeError) as e:
        raise BackendError(
            f"checkpoint {folder} is unreadable: {e}",
            hint="delete that checkpoint folder to resume from the previous one",
        ) from e


def checkpoints_root(out_dir: Path) -> Path:
    return Path(out_dir) / CHECKPOINTS_DIR


def checkpoint_dir(out_dir: Path, step: int) -> Path:
    return checkpoints_root(out_dir) / f"step-{step}"


def list_checkpoints(out_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``out_dir`` as (step, folder), oldest first."""
    root = checkpoints_root(out_dir)
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
            f"nothing to resume: no checkpoint under {checkpoints_root(out_dir)}",
            hint="start the run without --resume, or point at the run folder that was interrupted",
        )
    return found[-1][1]


def prune_incomplete(out_dir: Path) -> None:
    """Remove leftovers of a checkpoint write that was killed midway (temp folders)."""
    root = checkpoints_root(out_dir)
    if root.is_dir():
        for child in root.iterdir():
            if child.name.startswith(".") and child.is_dir():
                shutil.rmtree(child, ignore_errors=True)


def resume_point(out_dir: Path, resume: bool) -> Path | None:
    """The checkpoint a run continues from: the latest one with ``resume``, else None.

    Without ``resume`` a folder that already holds checkpoints is refused: training
    over them would mix two runs' records.
    """
    prune_incomplete(out_dir)
    if resume:
        return latest_checkpoint(out_dir)
    if list_checkpoints(out_dir):
        raise BackendError(
            f"{out_dir} already holds checkpoints of an earlier run",
            hint="resume it (--resume) or train into an empty folder",
        )
    return None


def check_resumable(saved: TrainerState, current: TrainerState, out_dir: Path) -> None:
    """Refuse to resume with other settings (``RESUME_FIELDS``) or other training data."""
    changed = changed_settings(saved.spec, current.spec)
    if changed:
        raise BackendError(
            f"cannot resume {out_dir}: {', '.join(changed)} differ from the interrupted run",
            hint="resume with the run's original settings, or start a new run",
        )
    if saved.data_digest and saved.data_digest != current.data_digest:
        raise BackendError(
            f"cannot resume {out_dir}: train.jsonl changed since the interrupted run",
            hint="resume on the same dataset version, or start a new run",
        )


def file_digest(path: Path) -> str:
    """sha256 of a file: a resumed run must see the same training data."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def changed_settings(before: Mapping[str, Any] | None, now: Mapping[str, Any]) -> list[str]:
    """The ``RESUME_FIELDS`` whose recorded values differ between two spec records."""
    before = before or {}
    return [k for k in RESUME_FIELDS if before.get(k) != now.get(k)]


class MetricsSink:
    """metrics.jsonl (one object per log/eval event) and a TensorBoard writer.

    ``resumed_at``: the step a resumed run continues from; the records after it
    (steps the run will repeat) are dropped from both.
    """

    def __init__(self, out_dir: Path, enabled: bool, resumed_at: int | None = None) -> None:
        self.path = out_dir / METRICS_FILE
        self.writer: Any = None
        if not enabled:
            return
        try:
            from tensorboardX import SummaryWriter
        except ImportError as e:
            raise BackendUnavailableError(
                "tensorboardX is not installed", hint="pip install tensorboardX"
            ) from e
        purge = None
        if resumed_at is not None:
            self._drop_after(resumed_at)
            purge = resumed_at + 1
        self.writer = SummaryWriter(str(out_dir / TENSORBOARD_DIR), purge_step=purge)

    def _drop_after(self, step: int) -> None:
        if not self.path.is_file():
            return
        lines = self.path.read_bytes().splitlines()
        kept = [line for line in lines if line.strip() and orjson.loads(line)["step"] <= step]
        atomic.write_bytes(self.path, b"".join(line + b"\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        if self.writer is None:
            return
        with self.path.open("ab") as handle:
            handle.write(orjson.dumps(record) + b"\n")
        prefix = "eval" if record.get("kind") == "eval" else "train"
        for key, value in record.items():
            if key not in ("kind", "step") and isinstance(value, int | float):
                self.writer.add_scalar(f"{prefix}/{key}", value, record["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class RunLog:
    """A run's progress: ``on_event``, metrics.jsonl and TensorBoard, from the main rank only."""

    def __init__(
        self,
        out_dir: Path,
        on_event: OnEvent,
        *,
        main: bool,
        total_steps: int,
        resumed_at: int | None = None,
    ) -> None:
        self.metrics = MetricsSink(out_dir, main, resumed_at)
        self.main = main
        self.total_steps = total_steps
        self._on_event = on_event

    def emit(self, kind: EventKind, step: int, **fields: Any) -> None:
        if self.main:
            self._on_event(TrainEvent(kind=kind, step=step, total_steps=self.total_steps, **fields))

    def train_window(
        self,
        state: TrainerState,
        *,
        loss: float,
        lr: float,
        tokens_per_second: float,
        elapsed: float,
    ) -> None:
        """Record the mean loss of the steps since the last log and report a "step" event."""
        self.metrics.write(
            {
                "kind": "train",
                "step": state.step,
                "loss": loss,
                "lr": lr,
                "tokens_per_second": tokens_per_second,
                "trained_tokens": state.trained_tokens,
                "elapsed": elapsed,
            }
        )
        state.last_loss = loss
        self.emit(
            "step",
            state.step,
            loss=loss,
            learning_rate=lr,
            tokens_per_second=tokens_per_second,
            trained_tokens=state.trained_tokens,
        )

    def evaluated(self, state: TrainerState, val_loss: float, elapsed: float) -> None:
        """Record an evaluation at the current step and report an "eval" event."""
        self.metrics.write(
            {"kind": "eval", "step": state.step, "val_loss": val_loss, "elapsed": elapsed}
        )
        self.emit("eval", state.step, val_loss=val_loss, trained_tokens=state.trained_tokens)

    def close(self) -> None:
        self.metrics.close()
