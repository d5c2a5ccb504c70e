"""What an evaluation found: ``EvalReport``, its JSON and its markdown page.

``reports/vX.json`` (also copied to ``models/vX/eval.json`` on promotion) holds
every case with both answers; ``reports/vX.md`` is the page a person reads, with
the PNG plots from :mod:`mlx_rsi.eval.plots` beside it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlx_rsi import atomic
from mlx_rsi.eval.gate import Decision
from mlx_rsi.eval.runner import CaseResult
from mlx_rsi.eval.scores import Score
from mlx_rsi.eval.stats import PairedDifference

FORMAT = "mlx-rsi-eval/2"


@dataclass
class EvalReport:
    version: str
    baseline: str  # the version compared against, or "base"
    split: str | None
    baseline_loss: float | None
    candidate_loss: float | None
    primary: PairedDifference
    suites: dict[str, Score]
    kinds: dict[str, Score]
    categories: dict[str, Score]
    decision: Decision
    cases: list[CaseResult] = field(default_factory=list)
    plots: dict[str, str] = field(default_factory=dict)  # name -> file name beside the report
    suite_sources: dict[str, str] = field(default_factory=dict)  # suite name -> where from

    @property
    def promote(self) -> bool:
        return self.decision.promote

    @property
    def reason(self) -> str:
        return "; ".join(self.decision.reasons)

    def summary(self) -> str:
        loss = ""
        if self.baseline_loss is not None and self.candidate_loss is not None:
            loss = f", held-out loss {self.baseline_loss:.4f} -> {self.candidate_loss:.4f}"
        guard = self.kinds.get("guard")
        guards = (
            f", guards {guard.baseline_rate:.0%} -> {guard.candidate_rate:.0%}" if guard else ""
        )
        return (
            f"evaluate: {self.version} vs {self.baseline}: primary {self.primary.describe()}"
            f"{guards}{loss}: {self.decision.text()}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": self.version,
            "baseline": self.baseline,
            "split": self.split,
            "baseline_loss": self.baseline_loss,
            "candidate_loss": self.candidate_loss,
            "baseline_pass_rate": self.primary.baseline_rate,
            "candidate_pass_rate": self.primary.candidate_rate,
            "primary": asdict(self.primary),
            "promote": self.promote,
            "reason": self.reason,
            "decision": self.decision.to_dict(),
            "suites": {k: v.to_dict() for k, v in self.suites.items()},
            "kinds": {k: v.to_dict() for k, v in self.kinds.items()},
            "categories": {k: v.to_dict() for k, v in self.categories.items()},
            "suite_sources": self.suite_sources,
            "plots": self.plots,
            "cases": [c.to_dict() for c in self.cases],
        }


def write_report(report: EvalReport, json_path: Path, markdown_path: Path) -> None:
    """eval JSON and the markdown page, each written atomically."""
    atomic.write_text(json_path, json.dumps(report.to_dict(), indent=2))
    atomic.write_text(markdown_path, render_markdown(report))


def _rate_row(name: str, s: Score) -> str:
    return (
        f"| {name} | {s.n} | {s.baseline_rate:.0%} | {s.candidate_rate:.0%} "
        f"| {s.regressions} | {s.candidate_violations} ({s.new_violations} new) |"
    )


def render_markdown(report: EvalReport) -> str:
    p = report.primary
    lines = [
        f"# Evaluation of {report.version}",
        "",
        f"Compared with **{report.baseline}**. Decision: **{report.decision.text()}**.",
        "",
        f"Primary suites: {p.describe()}; {p.wins} case(s) won, {p.losses} lost.",
        "",
    ]
    if report.baseline_loss is not None and report.candidate_loss is not None:
        lines += [
            f"Held-out loss on `{report.split}`: {report.baseline_loss:.4f} (baseline) -> "
            f"{report.candidate_loss:.4f} (candidate).",
            "",
        ]
    header = [
        "| {} | cases | baseline | candidate | regressions | violations |",
        "|---|---|---|---|---|---|",
    ]
    for title, table in (("suite", report.suites), ("category", report.categories)):
        lines += [f"## By {title}", "", header[0].format(title), header[1]]
        lines += [_rate_row(name, s) for name, s in table.items()]
        lines.append("")
    for name, file in report.plots.items():
        lines += [f"![{name}]({file})", ""]
    lines += ["## Cases", ""]
    for case in report.cases:
        mark = {(True, True): "=", (False, True): "+", (True, False): "-", (False, False): "·"}
        sign = mark[(case.baseline.passed, case.candidate.passed)]
        lines += [
            f"### {sign} [{case.suite}/{case.category}] {case.input}",
            f"- baseline ({_verdict(case.baseline.passed)}): {case.baseline_answer!r}",
            f"- candidate ({_verdict(case.candidate.passed)}): {case.candidate_answer!r}",
        ]
        if case.candidate.failed:
            lines.append(f"- candidate failed: {'; '.join(case.candidate.failed)}")
        lines.append("")
    return "\n".join(lines)


def _verdict(passed: bool) -> str:
    return "pass" if passed else "fail"
