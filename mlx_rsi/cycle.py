"""One improvement cycle: ingest → curate → dataset → train → evaluate → fuse → promote → export.

``mlx-rsi train`` runs it by hand and ``mlx-rsi watch`` when triggers fire. The
cycle is the ordered list :data:`STAGES`; this module is the only place that knows
their order. A cycle is recorded in the state store (``mlx_rsi.store``) and each
stage's completion with it, in the same transaction as the stage's own store
changes, so a cycle killed at any moment (kill -9, a full disk, a bad base model
found late) is finished by the next run from its last completed stage: the same
version and dataset, the run resumed from its checkpoint, evaluation and fuse done
again. ``fresh=True`` abandons it instead.

Adding a stage: write ``def _name(ctx: CycleContext) -> StageOutcome`` that may be
run again after a crash anywhere inside it (write files atomically, put store
changes in ``StageOutcome.commit``), and insert ``Stage("name", _name, ...)`` into
:data:`STAGES` at its place; ``when`` says if it applies to this cycle (e.g. only
for promoted versions) and ``outputs`` names the paths it writes through
``mlx_rsi.atomic`` so that temporary leftovers of a killed write are removed.
"""

from __future__ import annotations

import logging
import re
import shutil
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backends.base import Backend, OnEvent, get_backend
from mlx_rsi import atomic, registry, store, training
from mlx_rsi.config import Config
from mlx_rsi.crashpoint import crash_point
from mlx_rsi.errors import DatasetError, MlxRsiError
from mlx_rsi.evaluate import EvalReport, EvalTarget, ModelRef, evaluate_and_gate
from mlx_rsi.modelpath import check_base_model, resolve_base_model
from mlx_rsi.workspace import Workspace, transaction

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
    resumed: bool = False  # this run finished a cycle an earlier one started


@dataclass
class StageOutcome:
    """What a stage did: one line for the user, a JSON result kept with the cycle, and
    ``commit``, its store changes, applied in the transaction that records completion."""

    summary: str
    result: dict[str, Any] = field(default_factory=dict)
    commit: Callable[[sqlite3.Connection], object] | None = None


@dataclass
class CycleContext:
    """What stages share: the workspace, config, the recorded cycle and stage results."""

    ws: Workspace
    conn: sqlite3.Connection
    cfg: Config
    report: Report
    on_train_event: OnEvent
    cycle: store.Cycle
    ingest_paths: list[Path] | None = None
    curated: Any = None  # the curate stage's CurateResult (in memory only)
    run: training.RunRecord | None = None
    evaluation: EvalReport | None = None
    _backend: Backend | None = None
    _model_dir: Path | None = None
    _existing: tuple[Path | None] | None = None

    @property
    def results(self) -> dict[str, dict[str, Any]]:
        return self.cycle.completed

    @property
    def version(self) -> str:
        assert self.cycle.version is not None, "the dataset stage names the version"
        return self.cycle.version

    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = get_backend(self.cfg.train.backend)
        return self._backend

    def model_dir(self) -> Path:
        """The base model folder (the embedded model is converted on first use)."""
        if self._model_dir is None:
            self._model_dir = resolve_base_model(self.cfg.base_model, self.ws.root)
        return self._model_dir

    def existing_dataset(self) -> Path | None:
        """The dataset named by ``train.dataset`` when it exists (reported once)."""
        if self._existing is None:
            self._existing = (_find_existing(self.ws, self.cfg.train.dataset, self.report),)
        return self._existing[0]

    def promoting(self) -> bool:
        return bool(self.results.get("evaluate", {}).get("promote"))


@dataclass(frozen=True)
class Stage:
    """A named step of the cycle; see the module doc for how to add one.

    ``recorded``: its completion survives a crash (the cycle resumes after it);
    unrecorded stages (ingest, curate: incremental and cheap) are redone whenever a
    cycle passes them again. ``own_event``: the stage writes its own events row.
    """

    name: str
    run: Callable[[CycleContext], StageOutcome]
    when: Callable[[CycleContext], bool] = lambda ctx: True
    outputs: Callable[[CycleContext], list[Path]] = lambda ctx: []
    recorded: bool = True
    own_event: bool = False


def run_cycle(
    ws: Workspace,
    cfg: Config,
    *,
    report: Report,
    on_train_event: OnEvent,
    fresh: bool = False,
    ingest_paths: list[Path] | None = None,
) -> CycleResult:
    """Run one cycle (or finish the interrupted one); every stage reports one line.

    The caller holds the workspace lock: rows still ``running`` belong to a process
    that died, and are closed as interrupted.
    """
    conn = ws.store()
    try:
        get_backend(cfg.train.backend)  # an unavailable backend fails before any work
        check_base_model(cfg.base_model, ws.root)
        store.close_stale_events(conn)
        cycle = _open_cycle(ws, conn, report, fresh=fresh)
        ctx = CycleContext(ws, conn, cfg, report, on_train_event, cycle, ingest_paths)
        resumed = bool(cycle.completed)
        remove_leftovers(ctx)
        for stage in _pending(ctx):
            _run_stage(ctx, stage)
        store.finish_cycle(conn, cycle.id)
        remove_leftovers(ctx)
        return _result(ctx, resumed)
    finally:
        conn.close()


# --------------------------------------------------------------------------- the stages


def _ingest(ctx: CycleContext) -> StageOutcome:
    from mlx_rsi.ingest import ingest

    return StageOutcome(ingest(ctx.ws, ctx.cfg, ctx.ingest_paths).summary())


def _curate(ctx: CycleContext) -> StageOutcome:
    from mlx_rsi.curate import curate

    ctx.curated = curate(ctx.ws, ctx.cfg)
    return StageOutcome(ctx.curated.summary())


def _curating(ctx: CycleContext) -> bool:
    return ctx.existing_dataset() is None


def _dataset(ctx: CycleContext) -> StageOutcome:
    """Name the version, then use ``train.dataset`` or build ``datasets/<version>``."""
    cycle = ctx.cycle
    version = cycle.version or registry.next_version_name(ctx.conn)
    existing = ctx.existing_dataset()
    if existing is not None:
        name = ctx.cfg.train.dataset or existing.name
        _claim(ctx, version, name, built=False)
        return _dataset_outcome(f"dataset: using {name} ({existing})", name, existing)
    registered = store.dataset_path(ctx.conn, version)
    if registered is not None and cycle.dataset_built and cycle.dataset == version:
        # built and registered by this cycle before a crash: not rebuilt
        return _dataset_outcome(f"dataset: {version} already built ({registered})", version,
                                registered)  # fmt: skip
    _require_session_examples(ctx)
    _claim(ctx, version, version, built=True)
    from mlx_rsi.dataset import build_dataset

    dataset = build_dataset(ctx.ws, ctx.cfg, ctx.curated.examples, name=version)
    return _dataset_outcome(dataset.summary(), dataset.name, dataset.path)


def _dataset_outcome(summary: str, name: str, path: Path) -> StageOutcome:
    return StageOutcome(summary, {"dataset": name, "path": str(path)})


def _claim(ctx: CycleContext, version: str, dataset: str, *, built: bool) -> None:
    store.claim_dataset(ctx.conn, ctx.cycle.id, version, dataset, built=built)
    ctx.cycle.version, ctx.cycle.dataset, ctx.cycle.dataset_built = version, dataset, built


def _require_session_examples(ctx: CycleContext) -> None:
    if ctx.curated is None or not any(e.origin == "session" for e in ctx.curated.examples):
        raise DatasetError(
            "no high-quality examples from sessions to train on",
            hint="record sessions with metadata.success true, or lower curate.threshold",
        )


def _dataset_outputs(ctx: CycleContext) -> list[Path]:
    cycle = ctx.cycle
    return [ctx.ws.datasets_dir / cycle.dataset] if cycle.dataset_built and cycle.dataset else []


def _train(ctx: CycleContext) -> StageOutcome:
    conn, version = ctx.conn, ctx.version
    choice = training.choose_run(conn, ctx.cycle.run_id, version)
    if choice.note:
        ctx.report(f"resume: cycle {version} on dataset {ctx.cycle.dataset}: {choice.note}")
    if choice.finished is not None:
        ctx.run = training.finished_record(choice.finished)
    else:
        _start_training(ctx, choice.run_id)
        ctx.run = training.train_stage(
            ctx.ws,
            conn,
            ctx.cfg,
            dataset_name=_dataset_name(ctx),
            dataset_dir=_dataset_dir(ctx),
            model_dir=ctx.model_dir(),
            on_event=ctx.on_train_event,
            run_id=choice.run_id,
            resume=choice.resume,
        )
    adapter = str(ctx.run.adapter_dir)
    return StageOutcome(ctx.run.summary(), {"run_id": ctx.run.id, "adapter_dir": adapter})


def _start_training(ctx: CycleContext, run_id: str) -> None:
    """Record the run with the cycle and the version as ``training``, together."""
    conn = ctx.conn
    parent = registry.current_version(conn) or registry.BASE_VERSION
    version = registry.Version(ctx.version, "training", parent, _dataset_name(ctx), run_id)
    with transaction(conn):
        store.set_cycle_run(conn, ctx.cycle.id, run_id)
        registry.upsert_version(conn, version)
    ctx.cycle.run_id = run_id


def _train_outputs(ctx: CycleContext) -> list[Path]:
    if ctx.cycle.run_id is None:
        return []
    run_dir = ctx.ws.runs_dir / ctx.cycle.run_id
    return [run_dir / "adapter", run_dir / "train.yaml", *_output_dir(ctx)]


def _output_dir(ctx: CycleContext) -> list[Path]:
    output_dir = ctx.cfg.train.output_dir
    if not output_dir:
        return []
    target = Path(output_dir).expanduser()
    return [target if target.is_absolute() else ctx.ws.root / target]


def _evaluate(ctx: CycleContext) -> StageOutcome:
    """Candidate (base + adapter) against the current version, and the gate's decision."""
    baseline = _baseline(ctx)
    target = EvalTarget(
        version=ctx.version,
        candidate=ModelRef(ctx.version, ctx.model_dir(), _adapter_dir(ctx)),
        baseline=baseline,
        dataset_dir=_dataset_dir(ctx),
        run_dir=ctx.ws.runs_dir / ctx.results["train"]["run_id"],
    )
    evaluation = evaluate_and_gate(ctx.ws, ctx.cfg, ctx.backend(), target)
    ctx.evaluation = evaluation
    status = "candidate" if evaluation.promote else "rejected"
    version = registry.Version(
        ctx.version,
        status,
        baseline.name,
        _dataset_name(ctx),
        ctx.results["train"]["run_id"],
        evaluation.to_dict(),
    )
    result = {"promote": evaluation.promote, "baseline": baseline.name}
    return StageOutcome(
        evaluation.summary(), result, lambda conn: registry.upsert_version(conn, version)
    )


def _evaluate_outputs(ctx: CycleContext) -> list[Path]:
    if ctx.cycle.version is None:
        return []
    reports = ctx.ws.reports_dir
    return [reports / f"{ctx.version}{suffix}" for suffix in (".json", ".md")]


def _baseline(ctx: CycleContext) -> ModelRef:
    current = registry.current_version(ctx.conn)
    if current:
        fused = ctx.ws.models_dir / current / "hf"
        if (fused / "config.json").is_file():
            return ModelRef(current, fused)
        log.warning("current version %s has no fused model at %s; comparing to base", current,
                    fused)  # fmt: skip
    return ModelRef("base", ctx.model_dir())


def _fuse(ctx: CycleContext) -> StageOutcome:
    """The promoted adapter merged into the base: ``models/<version>/hf`` (+ eval.json)."""
    folder = ctx.ws.models_dir / ctx.version
    target = folder / "hf"
    with atomic.staged_dir(target, replace=True) as staging:
        ctx.backend().fuse(ctx.model_dir(), _adapter_dir(ctx), staging)
        crash_point("fuse", "staged")
    report = ctx.ws.reports_dir / f"{ctx.version}.json"
    atomic.write_text(folder / "eval.json", report.read_text())
    artifacts = {"hf": str(target), "adapter": str(_adapter_dir(ctx))}
    name = ctx.version
    return StageOutcome(
        f"fuse: {name} merged into {target}",
        {"artifacts": artifacts},
        lambda conn: registry.add_artifacts(conn, name, artifacts),
    )


def _fuse_outputs(ctx: CycleContext) -> list[Path]:
    if ctx.cycle.version is None:
        return []
    folder = ctx.ws.models_dir / ctx.version
    return [folder / "hf", folder / "eval.json"]


def _promote(ctx: CycleContext) -> StageOutcome:
    """Move the current pointer: one transaction with the versions' statuses."""
    name, hf = ctx.version, ctx.results["fuse"]["artifacts"]["hf"]
    return StageOutcome(
        f"promote: {name} is now current ({hf})",
        {"version": name},
        lambda conn: registry.make_current(conn, name),
    )


def _export(ctx: CycleContext) -> StageOutcome:
    """The promoted version in ``export.formats``, each checked (:mod:`mlx_rsi.export`)."""
    from mlx_rsi.export import export_version

    result = export_version(ctx.ws, ctx.cfg, ctx.version, None, report=ctx.report, force=True)
    return StageOutcome(result.summary(), {"artifacts": result.artifacts})


def _exporting(ctx: CycleContext) -> bool:
    return ctx.promoting() and bool(ctx.cfg.export.formats)


STAGES: tuple[Stage, ...] = (
    Stage("ingest", _ingest, recorded=False, own_event=True),
    Stage("curate", _curate, when=_curating, recorded=False),
    Stage("dataset", _dataset, outputs=_dataset_outputs),
    Stage("train", _train, outputs=_train_outputs),
    Stage("evaluate", _evaluate, outputs=_evaluate_outputs),
    Stage("fuse", _fuse, when=CycleContext.promoting, outputs=_fuse_outputs),
    Stage("promote", _promote, when=CycleContext.promoting),
    Stage("export", _export, when=_exporting),
)


# --------------------------------------------------------------------------- the runner


def _open_cycle(
    ws: Workspace, conn: sqlite3.Connection, report: Report, *, fresh: bool
) -> store.Cycle:
    """The unfinished cycle to continue (abandoned when ``fresh``), else a new one."""
    unfinished = store.unfinished_cycles(conn)
    for older in unfinished[1:]:  # only one can be continued; a state older mlx-rsi left
        abandon_cycle(ws, conn, older, report)
    cycle = unfinished[0] if unfinished else None
    if cycle is not None and fresh:
        abandon_cycle(ws, conn, cycle, report)
        cycle = None
    if cycle is None:
        return store.create_cycle(conn, uuid.uuid4().hex[:12])
    if cycle.completed:
        done = [s.name for s in STAGES if s.name in cycle.completed] or list(cycle.completed)
        report(
            f"resume: unfinished cycle {cycle.version} (done: {done[-1]}); finishing it "
            "(`train --fresh` starts a new one instead)"
        )
    return cycle


def abandon_cycle(
    ws: Workspace, conn: sqlite3.Connection, cycle: store.Cycle, report: Report
) -> None:
    """Give up a cycle: its version and run are marked abandoned, its dataset kept."""
    version = registry.get_version(conn, cycle.version) if cycle.version else None
    if version is not None and version.status in ("training", "candidate"):
        with transaction(conn):
            registry.set_status(conn, version.name, "abandoned")
    if cycle.run_id and (run := store.get_run(conn, cycle.run_id)) and run.status != "done":
        store.set_run_status(conn, cycle.run_id, "abandoned")
    store.finish_cycle(conn, cycle.id, "abandoned")
    _remove_empty(ws.models_dir / cycle.version if cycle.version else None)
    what = f"cycle {cycle.version}" if cycle.version else f"cycle {cycle.id}"
    report(f"resume: abandoned unfinished {what}")


def _pending(ctx: CycleContext) -> list[Stage]:
    """The stages after the last completed one."""
    done = [i for i, stage in enumerate(STAGES) if stage.name in ctx.results]
    return list(STAGES[done[-1] + 1 :] if done else STAGES)


def _run_stage(ctx: CycleContext, stage: Stage) -> None:
    if not stage.when(ctx):
        return
    conn, cycle = ctx.conn, ctx.cycle
    event_id = None if stage.own_event else store.start_event(conn, cycle.id, stage.name)
    crash_point(stage.name, "start")
    try:
        outcome = stage.run(ctx)
        crash_point(stage.name, "end")
    except BaseException as e:
        if event_id is not None:
            _close_event(conn, event_id, e)
        raise
    result = outcome.result if stage.recorded else None
    store.complete_stage(conn, cycle.id, stage.name, result=result, event_id=event_id,
                         summary=outcome.summary, commit=outcome.commit)  # fmt: skip
    if result is not None:
        ctx.results[stage.name] = result
    ctx.report(outcome.summary)
    crash_point(stage.name, "done")


def _close_event(conn: sqlite3.Connection, event_id: int, error: BaseException) -> None:
    """Record the stage's failure; if even that fails (a full disk), the stage's own error
    is the one to report, and the row is closed by the next run."""
    try:
        store.end_event(conn, event_id, *_failure(error))
    except sqlite3.Error as e:
        log.warning("could not record the failure of event %d: %s", event_id, e)


def _failure(error: BaseException) -> tuple[str, str]:
    """The events status and summary of a stage that raised ``error``."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted", "interrupted"
    if isinstance(error, MlxRsiError):
        return ("interrupted" if error.exit_code == 130 else "failed"), error.one_line()
    return "failed", f"{type(error).__name__}: {error}"


def _result(ctx: CycleContext, resumed: bool) -> CycleResult:
    results, version = ctx.results, ctx.cycle.version or ""
    promoted = "promote" in results
    if "evaluate" in results and not promoted:
        baseline = results["evaluate"].get("baseline", "base")
        ctx.report(f"promote: {version} rejected; {baseline} stays current")
    return CycleResult(
        cycle_id=ctx.cycle.id,
        version=version,
        dataset=ctx.cycle.dataset or "",
        run=ctx.run,
        evaluation=ctx.evaluation,
        promoted=promoted,
        artifacts=dict(results.get("fuse", {}).get("artifacts", {})) if promoted else {},
        resumed=resumed,
    )


def _dataset_name(ctx: CycleContext) -> str:
    return str(ctx.results["dataset"]["dataset"])


def _dataset_dir(ctx: CycleContext) -> Path:
    return Path(ctx.results["dataset"]["path"])


def _adapter_dir(ctx: CycleContext) -> Path:
    return Path(ctx.results["train"]["adapter_dir"])


def _find_existing(ws: Workspace, name: str | None, report: Report) -> Path | None:
    if not name:
        return None
    from mlx_rsi.dataset import find_dataset

    try:
        return find_dataset(ws, name)
    except DatasetError:
        report(f"dataset: '{name}' (train.dataset) not found; building one from sessions")
        return None


# --------------------------------------------------------------------------- leftovers


def remove_leftovers(ctx: CycleContext) -> list[Path]:
    """Remove temporary files and folders a killed atomic write of this cycle left.

    Only names :mod:`mlx_rsi.atomic` gives its staging siblings (``.<name>.<random>.tmp``
    and ``.<name>.old``) beside the paths the stages declare as outputs; an empty
    version folder (a fuse that never finished) goes too.
    """
    removed: list[Path] = []
    for stage in STAGES:
        for final in stage.outputs(ctx):
            removed += _remove_staging(final)
    if ctx.cycle.version:
        folder = ctx.ws.models_dir / ctx.cycle.version
        if _remove_empty(folder):
            removed.append(folder)
    for path in removed:
        log.info("removed leftover %s", path)
    return removed


def staging_name_pattern(final: Path) -> re.Pattern[str]:
    """The names atomic.write_bytes / staged_dir give their temporaries for ``final``."""
    name = re.escape(final.name)
    return re.compile(rf"^\.{name}\.(?:[A-Za-z0-9_]+\.tmp|old)$")


def _remove_staging(final: Path) -> list[Path]:
    parent = final.parent
    if not parent.is_dir():
        return []
    pattern = staging_name_pattern(final)
    found = [p for p in parent.iterdir() if pattern.match(p.name)]
    for path in found:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return found


def _remove_empty(folder: Path | None) -> bool:
    if folder is None or not folder.is_dir() or any(folder.iterdir()):
        return False
    folder.rmdir()
    return True
