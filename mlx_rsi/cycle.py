"""One improvement cycle: ingest → curate → dataset → train → evaluate → promote → fuse.

``mlx-rsi train`` runs it by hand and ``mlx-rsi watch`` when triggers fire. Each
stage records an ``events`` row and reports a one-line summary. A cycle that was
interrupted during training is picked up by the next one: the same version and
dataset, the run resumed from its last checkpoint (``fresh=True`` abandons it).
"""

from __future__ import annotations

import logging
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from backends.base import OnEvent, get_backend
from mlx_rsi import atomic, registry, training
from mlx_rsi.config import Config
from mlx_rsi.errors import DatasetError, MlxRsiError
from mlx_rsi.evaluate import EvalReport, evaluate_candidate, write_report
from mlx_rsi.modelpath import check_base_model, resolve_base_model
from mlx_rsi.workspace import Workspace, now_iso, transaction

log = logging.getLogger(__name__)
Report = Callable[[str], None]


@dataclass
class CycleResult:
    cycle_id: str
    version: str
    dataset: str
    run: training.RunRecord | None = None
    evaluation: EvalReport | None = None
    promoted: bool = False
    artifacts: dict[str, str] = field(default_factory=dict)


@dataclass
class _Plan:
    version: str
    dataset: str
    dataset_dir: Path
    run_id: str
    resume: bool


def run_cycle(
    ws: Workspace,
    cfg: Config,
    *,
    report: Report,
    on_train_event: OnEvent,
    fresh: bool = False,
    ingest_paths: list[Path] | None = None,
) -> CycleResult:
    """Run one cycle; every stage reports one line through ``report``."""
    conn = ws.store()
    try:
        cycle_id = uuid.uuid4().hex[:12]
        get_backend(cfg.train.backend)  # an unavailable backend fails before any work
        check_base_model(cfg.base_model, ws.root)
        plan = _resume_plan(conn, report, fresh)
        if plan is None:
            plan = _prepare_data(ws, conn, cfg, cycle_id, report, ingest_paths)
        model_dir = resolve_base_model(cfg.base_model, ws.root)  # may convert on first use
        result = CycleResult(cycle_id, plan.version, plan.dataset)
        _record_training_version(conn, plan)
        with _stage(conn, cycle_id, "train", report) as done:
            result.run = training.train_stage(
                ws,
                conn,
                cfg,
                dataset_name=plan.dataset,
                dataset_dir=plan.dataset_dir,
                model_dir=model_dir,
                on_event=on_train_event,
                run_id=plan.run_id,
                resume=plan.resume,
            )
            done(result.run.summary())
        _evaluate_and_gate(ws, conn, cfg, cycle_id, report, result, model_dir, plan)
        return result
    finally:
        conn.close()


def _resume_plan(conn: sqlite3.Connection, report: Report, fresh: bool) -> _Plan | None:
    """The unfinished cycle to continue, if any (abandoned when ``fresh``)."""
    row = training.unfinished_run(conn)
    if row is None:
        return None
    version = conn.execute(
        "SELECT name FROM versions WHERE run_id = ? AND status = 'training'", (row["id"],)
    ).fetchone()
    dataset_row = conn.execute("SELECT path FROM datasets WHERE name = ?", (row["dataset"],))
    dataset = dataset_row.fetchone()
    if fresh or version is None or dataset is None:
        training.abandon_run(conn, row["id"])
        if version is not None:
            registry.record_version(conn, registry.Version(version["name"], "abandoned"))
        report(f"resume: abandoned unfinished run {row['id']}")
        return None
    has_checkpoint = any((Path(row["out_dir"]) / "checkpoints").glob("step-*"))
    run_id = row["id"] if has_checkpoint else training.new_run_id(version["name"])
    how = f"resuming run {run_id}" if has_checkpoint else "restarting training (no checkpoint)"
    report(f"resume: unfinished cycle {version['name']} on dataset {row['dataset']}: {how}")
    return _Plan(version["name"], row["dataset"], Path(dataset["path"]), run_id, has_checkpoint)


def _prepare_data(
    ws: Workspace,
    conn: sqlite3.Connection,
    cfg: Config,
    cycle_id: str,
    report: Report,
    ingest_paths: list[Path] | None,
) -> _Plan:
    from mlx_rsi.curate import curate
    from mlx_rsi.dataset import build_dataset, find_dataset
    from mlx_rsi.ingest import ingest

    version = registry.next_version_name(conn)
    report(ingest(ws, cfg, ingest_paths).summary())  # ingest records its own event
    if cfg.train.dataset:
        existing = _existing_dataset(ws, cfg.train.dataset, report)
        if existing is not None:
            return _Plan(version, cfg.train.dataset, existing, training.new_run_id(version), False)
    with _stage(conn, cycle_id, "curate", report) as done:
        curated = curate(ws, cfg)
        done(curated.summary())
    if not any(example.origin == "session" for example in curated.examples):
        raise DatasetError(
            "no high-quality examples from sessions to train on",
            hint="record sessions with metadata.success true, or lower curate.threshold",
        )
    with _stage(conn, cycle_id, "dataset", report) as done:
        dataset = build_dataset(ws, cfg, curated.examples, name=version)
        done(dataset.summary())
    path = find_dataset(ws, dataset.name)
    return _Plan(version, dataset.name, path, training.new_run_id(version), False)


def _existing_dataset(ws: Workspace, name: str, report: Report) -> Path | None:
    from mlx_rsi.dataset import find_dataset

    try:
        path = find_dataset(ws, name)
    except DatasetError:
        report(f"dataset: '{name}' (train.dataset) not found; building one from sessions")
        return None
    report(f"dataset: using {name} ({path})")
    return path


def _record_training_version(conn: sqlite3.Connection, plan: _Plan) -> None:
    parent = registry.current_version(conn) or registry.BASE_VERSION
    registry.record_version(
        conn,
        registry.Version(plan.version, "training", parent, plan.dataset, plan.run_id),
    )


def _evaluate_and_gate(
    ws: Workspace,
    conn: sqlite3.Connection,
    cfg: Config,
    cycle_id: str,
    report: Report,
    result: CycleResult,
    model_dir: Path,
    plan: _Plan,
) -> None:
    assert result.run is not None and result.run.adapter_dir is not None
    backend = get_backend(cfg.train.backend)
    baseline_name, baseline_dir = _baseline(ws, conn, model_dir)
    with _stage(conn, cycle_id, "evaluate", report) as done:
        evaluation = evaluate_candidate(
            cfg,
            backend,
            version=plan.version,
            base_dir=model_dir,
            candidate_adapter=result.run.adapter_dir,
            baseline_dir=baseline_dir,
            baseline_name=baseline_name,
            dataset_dir=plan.dataset_dir,
        )
        write_report(
            evaluation,
            ws.reports_dir / f"{plan.version}.json",
            ws.reports_dir / f"{plan.version}.md",
        )
        done(evaluation.summary())
    result.evaluation = evaluation
    version = registry.Version(
        plan.version, "rejected", baseline_name, plan.dataset, plan.run_id, evaluation.to_dict()
    )
    if evaluation.promote:
        with _stage(conn, cycle_id, "promote", report) as done:
            version.artifacts = _fuse(ws, backend, model_dir, result.run.adapter_dir, plan.version)
            atomic.write_text(
                ws.models_dir / plan.version / "eval.json",
                (ws.reports_dir / f"{plan.version}.json").read_text(),
            )
            version.status = "candidate"
            registry.record_version(conn, version)
            registry.promote(conn, plan.version)
            result.promoted, result.artifacts = True, version.artifacts
            done(f"promote: {plan.version} is now current ({version.artifacts['hf']})")
    else:
        registry.record_version(conn, version)
        report(f"promote: {plan.version} rejected; {baseline_name} stays current")


def _baseline(ws: Workspace, conn: sqlite3.Connection, model_dir: Path) -> tuple[str, Path]:
    current = registry.current_version(conn)
    if current:
        fused = ws.models_dir / current / "hf"
        if (fused / "config.json").is_file():
            return current, fused
        log.warning(
            "current version %s has no fused model at %s; comparing to base", current, fused
        )
    return "base", model_dir


def _fuse(
    ws: Workspace, backend: object, model_dir: Path, adapter: Path, name: str
) -> dict[str, str]:
    target = ws.models_dir / name / "hf"
    with atomic.staged_dir(target, replace=True) as staging:
        backend.fuse(model_dir, adapter, staging)  # type: ignore[attr-defined]
    return {"hf": str(target), "adapter": str(adapter)}


@contextmanager
def _stage(
    conn: sqlite3.Connection, cycle_id: str, stage: str, report: Report
) -> Iterator[Callable[[str], None]]:
    """Record a stage in ``events``; the body calls ``done(summary)`` on success."""
    with transaction(conn):
        cursor = conn.execute(
            "INSERT INTO events (cycle_id, stage, status, started_at) VALUES (?, ?, 'running', ?)",
            (cycle_id, stage, now_iso()),
        )
    event_id = cursor.lastrowid
    summary: list[str] = []

    def done(line: str) -> None:
        summary.append(line)
        report(line)

    status = "failed"
    try:
        yield done
        status = "done"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except MlxRsiError as e:
        status = "interrupted" if e.exit_code == 130 else "failed"
        summary.append(e.one_line())
        raise
    finally:
        with transaction(conn):
            conn.execute(
                "UPDATE events SET status = ?, summary = ?, finished_at = ? WHERE id = ?",
                (status, "\n".join(summary), now_iso(), event_id),
            )
