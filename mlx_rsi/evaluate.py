"""Evaluate a candidate against a baseline and decide the gate (the cycle's evaluate stage).

``evaluate_and_gate`` composes :mod:`mlx_rsi.eval`: collect the suites (held-out
suite of the dataset, configured suites, guards), answer them greedily with both
models through the backend, judge, compare with a paired bootstrap, measure
held-out loss, decide (:mod:`mlx_rsi.eval.gate`), and write ``reports/vX.json``,
``reports/vX.md`` and its PNG plots. The primary suites are stored with the
version (``models/vX/suites/``) so that later versions are guarded by them.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from backends.base import Backend
from mlx_rsi import registry
from mlx_rsi.config import Config
from mlx_rsi.eval import plots, scores
from mlx_rsi.eval.collect import collect_suites
from mlx_rsi.eval.gate import decide
from mlx_rsi.eval.guards import VERSION_SUITES_DIR
from mlx_rsi.eval.report import EvalReport, write_report
from mlx_rsi.eval.runner import CaseResult, ModelRef, heldout_losses, heldout_split, run_suites
from mlx_rsi.eval.stats import paired_bootstrap
from mlx_rsi.eval.suites import SuiteSet, write_suite
from mlx_rsi.workspace import Workspace

__all__ = ["EvalReport", "ModelRef", "evaluate_and_gate", "heldout_split", "write_report"]

log = logging.getLogger(__name__)
PROMOTED = ("current", "retired")


@dataclass(frozen=True)
class EvalTarget:
    """What to evaluate: a candidate against a baseline, on a dataset's held-out data."""

    version: str
    candidate: ModelRef
    baseline: ModelRef
    dataset_dir: Path | None = None
    run_dir: Path | None = None  # the candidate's run folder (loss curves)


def evaluate_and_gate(
    ws: Workspace,
    cfg: Config,
    backend: Backend,
    target: EvalTarget,
    *,
    suites: Sequence[Path] = (),
    report_name: str | None = None,
    keep_suites: bool = True,
) -> EvalReport:
    """Run every suite on both models, decide, write the report files; see the module doc."""
    earlier = _earlier_promoted(ws, target.version)
    suite_set = collect_suites(
        cfg,
        ws.root,
        dataset_dir=target.dataset_dir,
        models_dir=ws.models_dir,
        earlier_versions=earlier,
        explicit=suites,
    )
    results = run_suites(
        backend,
        target.baseline,
        target.candidate,
        suite_set.all(),
        max_tokens=cfg.eval.max_new_tokens,
        template=cfg.train.template,
        fallback=cfg.train.fallback_template,
    )
    split, losses = _losses(backend, cfg, target)
    report = _report(cfg, target, suite_set, results, split, losses)
    name = report_name or target.version
    report.plots = _plots(ws, report, target, name)
    write_report(report, ws.reports_dir / f"{name}.json", ws.reports_dir / f"{name}.md")
    if keep_suites:
        store_suites(ws, target.version, suite_set)
    log.info("%s", report.summary())
    return report


def _losses(
    backend: Backend, cfg: Config, target: EvalTarget
) -> tuple[str | None, tuple[float, float] | None]:
    if target.dataset_dir is None:
        return None, None
    split = heldout_split(target.dataset_dir)
    return split.stem, heldout_losses(
        backend,
        target.baseline,
        target.candidate,
        split,
        template=cfg.train.template,
        fallback=cfg.train.fallback_template,
    )


def _report(
    cfg: Config,
    target: EvalTarget,
    suite_set: SuiteSet,
    results: list[CaseResult],
    split: str | None,
    losses: tuple[float, float] | None,
) -> EvalReport:
    primary = [r for r in results if r.kind == "primary"]
    guards = [r for r in results if r.kind == "guard"]
    difference = paired_bootstrap(
        [r.baseline.passed for r in primary],
        [r.candidate.passed for r in primary],
        resamples=cfg.eval.bootstrap_resamples,
        confidence=cfg.eval.confidence,
        seed=cfg.eval.seed,
    )
    decision = decide(
        cfg.eval, difference, scores.by(guards, "suite"), scores.score(results), losses
    )
    return EvalReport(
        version=target.version,
        baseline=target.baseline.name,
        split=split,
        baseline_loss=losses[0] if losses else None,
        candidate_loss=losses[1] if losses else None,
        primary=difference,
        suites=scores.by(results, "suite"),
        kinds=scores.by(results, "kind"),
        categories=scores.by(primary or results, "category"),
        decision=decision,
        cases=results,
        suite_sources={s.name: s.source for s in suite_set.all()},
    )


def _plots(ws: Workspace, report: EvalReport, target: EvalTarget, name: str) -> dict[str, str]:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        log.warning("matplotlib is not installed: the report has no plots (pip install matplotlib)")
        return {}
    out: dict[str, Path | None] = {}
    folder = ws.reports_dir
    if target.run_dir is not None:
        out["loss curves"] = plots.loss_curves(
            target.run_dir / "metrics.jsonl", folder / f"{name}-loss.png"
        )
    out["success per category"] = plots.category_success(
        report.categories, report.baseline, report.version, folder / f"{name}-categories.png"
    )
    out["history"] = plots.history(history_points(ws, report), folder / f"{name}-history.png")
    return {k: v.name for k, v in out.items() if v is not None}


def history_points(
    ws: Workspace, latest: EvalReport | None = None
) -> list[tuple[str, float, bool]]:
    """(version, primary success, promoted) of every evaluated version, oldest first."""
    conn = ws.store()
    try:
        versions = registry.list_versions(conn)
    finally:
        conn.close()
    points = []
    for v in versions:
        rate = v.eval.get("candidate_pass_rate") if v.eval else None
        if v.name != (latest.version if latest else None) and rate is not None:
            points.append((v.name, float(rate), v.status in PROMOTED))
    if latest is not None:
        points.append((latest.version, latest.primary.candidate_rate, latest.promote))
    return points


def store_suites(ws: Workspace, version: str, suite_set: SuiteSet) -> None:
    """The version's primary suites, kept with it (guards for later versions)."""
    folder = ws.models_dir / version / VERSION_SUITES_DIR
    for suite in suite_set.primary:
        write_suite(folder / f"{_safe(suite.name)}.yaml", suite)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def _earlier_promoted(ws: Workspace, version: str) -> list[str]:
    conn = ws.store()
    try:
        return earlier_promoted(conn, version)
    finally:
        conn.close()


def earlier_promoted(conn: sqlite3.Connection, version: str) -> list[str]:
    return [
        v.name for v in registry.list_versions(conn) if v.status in PROMOTED and v.name != version
    ]


def run_eval(
    ws: Workspace,
    cfg: Config,
    version: str | None,
    against: str | None,
    suites: Sequence[Path] = (),
) -> EvalReport:
    """``mlx-rsi eval``: VERSION (default current) against ``against`` (see the command)."""
    from backends.base import get_backend
    from mlx_rsi.errors import UsageError
    from mlx_rsi.eval.models import resolve_model, version_dataset_dir, version_run_dir

    conn = ws.store()
    try:
        name = version or registry.current_version(conn)
        if name is None:
            raise UsageError(
                "no version to evaluate: nothing is promoted yet",
                hint="name one (mlx-rsi versions) or run `mlx-rsi train`",
            )
        if against is None:
            against = "base" if name == registry.current_version(conn) else "current"
        candidate = resolve_model(ws, conn, cfg, name)
        baseline = resolve_model(ws, conn, cfg, against)
        target = EvalTarget(
            version=name,
            candidate=candidate,
            baseline=baseline,
            dataset_dir=version_dataset_dir(conn, name),
            run_dir=version_run_dir(ws, conn, name),
        )
    finally:
        conn.close()
    backend = get_backend(cfg.train.backend)
    return evaluate_and_gate(ws, cfg, backend, target, suites=suites, keep_suites=False)
