"""How an evaluation looks in the terminal (rich tables); the command stays thin."""

from __future__ import annotations

from pathlib import Path

from mlx_rsi.eval.report import EvalReport
from mlx_rsi.eval.scores import Score
from mlx_rsi.ui import UI


def _row(name: str, s: Score, extra: str = "") -> tuple[str, ...]:
    delta = s.candidate_rate - s.baseline_rate
    cells = (
        name,
        str(s.n),
        f"{s.baseline_rate:.0%}",
        f"{s.candidate_rate:.0%}",
        f"{delta:+.0%}",
        str(s.regressions),
        f"{s.candidate_violations} ({s.new_violations} new)",
    )
    return (*cells, extra) if extra else cells


def render_report(ui: UI, report: EvalReport, reports_dir: Path) -> None:
    columns = ["cases", report.baseline, report.version, "Δ", "regressions", "violations"]
    ui.table(
        f"{report.version} vs {report.baseline}: suites",
        ["suite", *columns, "kind"],
        [_row(name, s, _kind(report, name)) for name, s in report.suites.items()],
    )
    ui.table(
        "primary suites by category",
        ["category", *columns],
        [_row(name, s) for name, s in report.categories.items()],
    )
    ui.line(f"primary: {report.primary.describe()}")
    if report.baseline_loss is not None and report.candidate_loss is not None:
        ui.line(
            f"held-out loss ({report.split}): {report.baseline_loss:.4f} -> "
            f"{report.candidate_loss:.4f}"
        )
    ui.line(f"gate: {report.decision.text()}")
    ui.line(f"report: {reports_dir / (report.version + '.md')}")


def _kind(report: EvalReport, suite: str) -> str:
    kinds = {c.kind for c in report.cases if c.suite == suite}
    return ",".join(sorted(kinds))
