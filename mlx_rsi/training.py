"""The train stage: a TrainSpec from the config, a recorded run, one backend call.

Each run gets ``runs/<id>/`` with the resolved config (``train.yaml``) written
before training starts, the backend's checkpoints, metrics and adapter, and a
``runs`` row whose status is running → done | interrupted | failed. An
interrupted run is resumed (optimizer state and step included) by the next cycle.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from backends.base import (
    OnEvent,
    Precision,
    TrainResult,
    TrainSpec,
    get_backend,
    spec_to_dict,
)
from mlx_rsi import atomic
from mlx_rsi.config import Config, TrainConfig, to_plain
from mlx_rsi.errors import InterruptedRun, WorkspaceError
from mlx_rsi.workspace import Workspace, now_iso, transaction


@dataclass
class RunRecord:
    id: str
    backend: str
    dataset: str
    status: str
    out_dir: Path
    adapter_dir: Path | None = None
    result: dict[str, Any] | None = None

    def summary(self) -> str:
        result = self.result or {}
        loss = result.get("final_loss")
        val = result.get("best_val_loss")
        parts = [f"train: run {self.id} ({self.backend}) {self.status}"]
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


def unfinished_run(conn: sqlite3.Connection) -> sqlite3.Row | None:
    """The latest run that was interrupted (or killed while running), if any."""
    return conn.execute(
        "SELECT * FROM runs WHERE status IN ('running', 'interrupted') "
        "ORDER BY created_at DESC, rowid DESC LIMIT 1"
    ).fetchone()


def abandon_run(conn: sqlite3.Connection, run_id: str) -> None:
    with transaction(conn):
        conn.execute(
            "UPDATE runs SET status = 'abandoned', updated_at = ? WHERE id = ?",
            (now_iso(), run_id),
        )


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
    _record_run(conn, run_id, backend.name, dataset_name, spec, out_dir, "running")
    try:
        result = backend.train(spec, dataset_dir, out_dir, on_event)
    except InterruptedRun:
        _set_status(conn, run_id, "interrupted")
        raise
    except BaseException:
        _set_status(conn, run_id, "failed")
        raise
    _copy_to_output_dir(ws, cfg.train.output_dir, result.adapter_dir)
    return _finish_run(conn, run_id, backend.name, dataset_name, out_dir, result)


def _record_run(
    conn: sqlite3.Connection,
    run_id: str,
    backend: str,
    dataset: str,
    spec: TrainSpec,
    out_dir: Path,
    status: str,
) -> None:
    spec_json = json.dumps(spec_to_dict(spec))
    stamp = now_iso()
    with transaction(conn):
        conn.execute(
            """INSERT INTO runs
               (id, backend, dataset, spec, status, out_dir, created_at, updated_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(id) DO UPDATE SET status = excluded.status,
               spec = excluded.spec, updated_at = excluded.updated_at""",
            (run_id, backend, dataset, spec_json, status, str(out_dir), stamp, stamp),
        )


def _set_status(conn: sqlite3.Connection, run_id: str, status: str) -> None:
    with transaction(conn):
        conn.execute(
            "UPDATE runs SET status = ?, updated_at = ? WHERE id = ?", (status, now_iso(), run_id)
        )


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
    with transaction(conn):
        conn.execute(
            "UPDATE runs SET status = 'done', step = ?, adapter_dir = ?, result = ?, "
            "updated_at = ? WHERE id = ?",
            (result.steps, str(result.adapter_dir), json.dumps(summary), now_iso(), run_id),
        )
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
