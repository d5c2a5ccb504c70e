"""The train stage: a TrainSpec from the config, a recorded run, one backend call.

Each run gets ``runs/<id>/`` with the resolved config (``train.yaml``) written
before training starts, the backend's checkpoints, metrics and adapter, and a
``runs`` row whose status is running → done | interrupted | failed | abandoned,
and whose ``step`` follows training (written at each checkpoint, evaluation and
at most every few seconds between). An interrupted run is resumed (optimizer
state and step included) by the next cycle; a run killed before its first
checkpoint is abandoned and a new one starts; a run that finished is not redone.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from backends import run_files
from backends.base import (
    OnEvent,
    Precision,
    TrainEvent,
    TrainResult,
    TrainSpec,
    get_backend,
    spec_to_dict,
)
from mlx_rsi import atomic, autotune, store, warmstart
from mlx_rsi.config import Config, TrainConfig, to_plain
from mlx_rsi.crashpoint import crash_point
from mlx_rsi.errors import InterruptedRun, WorkspaceError
from mlx_rsi.workspace import Workspace

log = logging.getLogger(__name__)
STEP_RECORD_SECONDS = 5.0  # how often, at most, a step event updates runs.step


@dataclass
class RunRecord:
    id: str
    backend: str
    dataset: str
    status: str
    out_dir: Path
    adapter_dir: Path | None = None
    result: dict[str, Any] | None = None
    warm: str | None = None  # WarmStart.summary() when the run continued a version

    def summary(self) -> str:
        result = self.result or {}
        loss = result.get("final_loss")
        val = result.get("best_val_loss")
        parts = [f"train: run {self.id} ({self.backend}) {self.status}"]
        if self.warm:
            parts.append(self.warm)
        if result:
            parts.append(f"{result.get('steps')} steps, {result.get('trained_tokens')} tokens")
            parts.append(f"{result.get('seconds', 0):.1f}s")
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        if val is not None:
            parts.append(f"best val loss {val:.4f}")
        return ", ".join(parts)


def spec_from_config(train: TrainConfig, model_dir: Path, *, resume: bool = False) -> TrainSpec:
    """Map the LLaMA-Factory-style keys onto the backends' shared TrainSpec."""
    targets = tuple(t.strip() for t in train.lora_target.split(",") if t.strip()) or ("all",)
    precision: Precision = "bf16" if train.bf16 else "fp16" if train.fp16 else "auto"
    return TrainSpec(
        model_dir=model_dir,
        rank=train.lora_rank,
        alpha=train.lora_alpha,
        dropout=train.lora_dropout,
        target_modules=targets,
        num_layers=train.lora_layers,
        use_dora=train.use_dora or train.finetuning_type == "dora",
        quantize_bits=train.quantization_bit,
        learning_rate=train.learning_rate,
        schedule=train.lr_scheduler_type,
        warmup_ratio=train.warmup_ratio,
        epochs=train.num_train_epochs,
        max_steps=train.max_steps,
        batch_size=train.per_device_train_batch_size,
        grad_accum=train.gradient_accumulation_steps,
        cutoff_len=train.cutoff_len,
        seed=train.seed,
        save_steps=train.save_steps,
        eval_steps=train.eval_steps,
        logging_steps=train.logging_steps,
        gradient_checkpointing=train.gradient_checkpointing,
        precision=precision,
        template=train.template,
        fallback_template=train.fallback_template,
        early_stopping_patience=train.early_stopping_patience,
        resume=resume,
    )


def new_run_id(version: str) -> str:
    return f"{version}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class RunChoice:
    """How the train stage continues a cycle: which run, and whether it resumes."""

    run_id: str
    resume: bool
    finished: store.RunRow | None = None  # the run already trained its adapter
    note: str = ""  # one line for the user when an earlier run is continued or replaced


def choose_run(conn: sqlite3.Connection, previous: str | None, version: str) -> RunChoice:
    """Continue ``previous`` (the cycle's run, if any) or start a new run for ``version``."""
    row = store.get_run(conn, previous) if previous else None
    if row is None:
        return RunChoice(new_run_id(version), resume=False)
    if row.status == "done" and row.adapter_dir is not None and row.adapter_dir.is_dir():
        return RunChoice(row.id, resume=False, finished=row, note=f"run {row.id} already trained")
    if any((row.out_dir / "checkpoints").glob("step-*")):
        return RunChoice(row.id, resume=True, note=f"resuming run {row.id}")
    store.set_run_status(conn, row.id, "abandoned")
    run_files.prune_incomplete(row.out_dir)  # a checkpoint write the kill cut short
    run_id = new_run_id(version)
    return RunChoice(run_id, resume=False, note=f"restarting training as {run_id} (no checkpoint)")


def finished_record(row: store.RunRow) -> RunRecord:
    return RunRecord(row.id, row.backend, row.dataset or "", "done", row.out_dir,
                     row.adapter_dir, row.result)  # fmt: skip


def train_stage(
    ws: Workspace,
    conn: sqlite3.Connection,
    cfg: Config,
    *,
    dataset_name: str,
    dataset_dir: Path,
    model_dir: Path,
    on_event: OnEvent,
    run_id: str,
    resume: bool = False,
) -> RunRecord:
    """Train one adapter through the configured backend, recording the run."""
    backend = get_backend(cfg.train.backend)
    out_dir = ws.runs_dir / run_id
    spec = spec_from_config(cfg.train, model_dir, resume=resume)
    if not resume:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic.write_text(out_dir / "train.yaml", yaml.safe_dump(to_plain(cfg), sort_keys=False))
    elif not out_dir.is_dir():
        raise WorkspaceError(f"cannot resume run {run_id}: {out_dir} is missing")
    warm = _warm_start(ws, conn, cfg, spec, backend.name, dataset_dir, out_dir)
    if warm is not None:
        spec = dataclasses.replace(spec, init_adapter=warm.adapter)
        dataset_dir = warm.folder
    spec = autotune.with_min_steps(spec, cfg.train, autotune.count_examples(dataset_dir))
    spec_json = spec_to_dict(spec)
    store.record_run(
        conn, run_id, backend=backend.name, dataset=dataset_name, spec=spec_json, out_dir=out_dir
    )
    try:
        recording = _recording(conn, run_id, on_event)
        result = autotune.train(backend, spec, cfg.train, dataset_dir, out_dir, recording)
        crash_point("train", "trained")
    except InterruptedRun:
        store.set_run_status(conn, run_id, "interrupted")
        raise
    except BaseException:
        store.set_run_status(conn, run_id, "failed")
        raise
    _copy_to_output_dir(ws, cfg.train.output_dir, result.adapter_dir)
    record = _finish_run(conn, run_id, backend.name, dataset_name, out_dir, result)
    record.warm = warm.summary() if warm else None
    return record


def _warm_start(
    ws: Workspace,
    conn: sqlite3.Connection,
    cfg: Config,
    spec: TrainSpec,
    backend: str,
    dataset_dir: Path,
    out_dir: Path,
) -> warmstart.WarmStart | None:
    """A resumed run keeps the warm split it began with; a new run plans one."""
    if spec.resume:
        return warmstart.resumed(out_dir)
    return warmstart.plan(
        ws, conn, cfg.train, spec, backend=backend, dataset_dir=dataset_dir, out_dir=out_dir
    )


def _recording(conn: sqlite3.Connection, run_id: str, on_event: OnEvent) -> OnEvent:
    """``on_event`` that also keeps ``runs.step`` up to date, cheaply.

    The step is written at each checkpoint, evaluation and the end, and for plain
    steps at most every :data:`STEP_RECORD_SECONDS`: one small transaction, never
    one per step.
    """
    last_write = time.monotonic()

    def handle(event: TrainEvent) -> None:
        nonlocal last_write
        on_event(event)
        now = time.monotonic()
        if event.kind in ("save", "eval", "end") or now - last_write >= STEP_RECORD_SECONDS:
            try:
                store.set_run_step(conn, run_id, event.step)
            except sqlite3.Error as e:  # progress only: training goes on
                log.warning("could not record step %d of run %s: %s", event.step, run_id, e)
            last_write = now
        if event.kind in ("step", "save"):
            crash_point("train", event.kind)

    return handle


def _finish_run(
    conn: sqlite3.Connection,
    run_id: str,
    backend: str,
    dataset: str,
    out_dir: Path,
    result: TrainResult,
) -> RunRecord:
    summary = {
        "steps": result.steps,
        "final_loss": result.final_loss,
        "best_val_loss": result.best_val_loss,
        "trained_tokens": result.trained_tokens,
        "seconds": result.seconds,
        "stopped_early": result.stopped_early,
    }
    store.finish_run(conn, run_id, result.steps, result.adapter_dir, summary)
    return RunRecord(run_id, backend, dataset, "done", out_dir, result.adapter_dir, summary)


def _copy_to_output_dir(ws: Workspace, output_dir: str | None, adapter_dir: Path) -> None:
    """Honour the seed YAML's output_dir: the final adapter is copied there too."""
    if not output_dir:
        return
    target = Path(output_dir).expanduser()
    target = target if target.is_absolute() else ws.root / target
    # Replaced only when it holds an adapter (ours from an earlier cycle), never a user folder.
    owned = (target / "adapter_config.json").is_file()
    with atomic.staged_dir(target, replace=owned) as staging:
        shutil.copytree(adapter_dir, staging, dirs_exist_ok=True)
