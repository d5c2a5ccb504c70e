"""Evaluate a candidate adapter against the current version and decide the gate.

Two measures, both on data the candidate never trained on:
- held-out loss (mean per assistant token) on the dataset's test split (valid when
  the test split is empty), for the baseline (the current version's fused model,
  or the base model when nothing is current yet) and for base + candidate adapter;
- the seed guide's keyword test cases (step 13): greedy answers must contain every
  expected keyword.
The gate promotes only when the loss improves by at least ``eval.min_improvement``
and the keyword success rate does not drop (seed: "monitor for degradation").
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backends.base import Backend
from mlx_rsi import atomic
from mlx_rsi.config import Config, TestCase
from mlx_rsi.errors import DatasetError


@dataclass
class CaseResult:
    input: str
    expected: list[str]
    baseline_answer: str
    candidate_answer: str
    baseline_pass: bool
    candidate_pass: bool


@dataclass
class EvalReport:
    version: str
    baseline: str  # the version compared against, or "base"
    split: str
    baseline_loss: float
    candidate_loss: float
    baseline_pass_rate: float
    candidate_pass_rate: float
    promote: bool
    reason: str
    cases: list[CaseResult] = field(default_factory=list)

    def summary(self) -> str:
        verdict = "promote" if self.promote else "reject"
        return (
            f"evaluate: {self.version} vs {self.baseline} on {self.split}: loss "
            f"{self.baseline_loss:.4f} -> {self.candidate_loss:.4f}, test cases "
            f"{self.baseline_pass_rate:.0%} -> {self.candidate_pass_rate:.0%}: {verdict} "
            f"({self.reason})"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def heldout_split(dataset_dir: Path) -> Path:
    """The test split when it has records, else the validation split."""
    for name in ("test.jsonl", "valid.jsonl"):
        path = dataset_dir / name
        if path.is_file() and path.stat().st_size > 0:
            return path
    raise DatasetError(
        f"dataset {dataset_dir} has no held-out records (test.jsonl and valid.jsonl are empty)",
        hint="collect more sessions, or lower curate.test_fraction/valid_fraction",
    )


def evaluate_candidate(
    cfg: Config,
    backend: Backend,
    *,
    version: str,
    base_dir: Path,
    candidate_adapter: Path,
    baseline_dir: Path,
    baseline_name: str,
    dataset_dir: Path,
) -> EvalReport:
    """Compare baseline (a full model folder) with base + candidate adapter."""
    split = heldout_split(dataset_dir)
    template = cfg.train.template
    baseline_loss = backend.loss(baseline_dir, None, split, template=template)
    candidate_loss = backend.loss(base_dir, candidate_adapter, split, template=template)
    cases = _run_cases(cfg, backend, base_dir, candidate_adapter, baseline_dir)
    baseline_rate = _pass_rate([c.baseline_pass for c in cases])
    candidate_rate = _pass_rate([c.candidate_pass for c in cases])
    promote, reason = gate(
        baseline_loss, candidate_loss, baseline_rate, candidate_rate, cfg.eval.min_improvement
    )
    return EvalReport(
        version=version,
        baseline=baseline_name,
        split=split.stem,
        baseline_loss=baseline_loss,
        candidate_loss=candidate_loss,
        baseline_pass_rate=baseline_rate,
        candidate_pass_rate=candidate_rate,
        promote=promote,
        reason=reason,
        cases=cases,
    )


def gate(
    baseline_loss: float,
    candidate_loss: float,
    baseline_rate: float,
    candidate_rate: float,
    min_improvement: float,
) -> tuple[bool, str]:
    improvement = baseline_loss - candidate_loss
    if improvement <= min_improvement:
        return False, f"held-out loss improved by {improvement:.4f}, needs > {min_improvement}"
    if candidate_rate < baseline_rate:
        return False, "fewer test cases pass than before"
    return True, f"held-out loss improved by {improvement:.4f}"


def case_passes(answer: str, expected: tuple[str, ...] | list[str]) -> bool:
    lowered = answer.lower()
    return all(keyword.lower() in lowered for keyword in expected)


def _run_cases(
    cfg: Config, backend: Backend, base_dir: Path, adapter: Path, baseline_dir: Path
) -> list[CaseResult]:
    cases: tuple[TestCase, ...] = cfg.eval.test_cases
    if not cases:
        return []
    prompts = [[{"role": "user", "content": case.input}] for case in cases]
    tokens, template = cfg.eval.max_new_tokens, cfg.train.template
    before = backend.generate(baseline_dir, None, prompts, max_tokens=tokens, template=template)
    after = backend.generate(base_dir, adapter, prompts, max_tokens=tokens, template=template)
    return [
        CaseResult(
            case.input,
            list(case.expected),
            old,
            new,
            case_passes(old, case.expected),
            case_passes(new, case.expected),
        )
        for case, old, new in zip(cases, before, after, strict=True)
    ]


def _pass_rate(passes: list[bool]) -> float:
    return sum(passes) / len(passes) if passes else 0.0


def write_report(report: EvalReport, json_path: Path, markdown_path: Path) -> None:
    """eval JSON and a readable markdown report, each written atomically."""
    atomic.write_text(json_path, json.dumps(report.to_dict(), indent=2))
    atomic.write_text(markdown_path, render_markdown(report))


def render_markdown(report: EvalReport) -> str:
    lines = [
        f"# Evaluation of {report.version}",
        "",
        f"Compared with **{report.baseline}** on the `{report.split}` split.",
        "",
        "| measure | baseline | candidate |",
        "|---|---|---|",
        f"| held-out loss | {report.baseline_loss:.4f} | {report.candidate_loss:.4f} |",
        f"| test cases passed | {report.baseline_pass_rate:.0%} "
        f"| {report.candidate_pass_rate:.0%} |",
        "",
        f"Decision: **{'promote' if report.promote else 'reject'}** — {report.reason}.",
        "",
    ]
    for case in report.cases:
        lines += [
            f"## {case.input}",
            f"Expected keywords: {', '.join(case.expected) or '(none)'}",
            "",
            f"- baseline ({'pass' if case.baseline_pass else 'fail'}): {case.baseline_answer!r}",
            f"- candidate ({'pass' if case.candidate_pass else 'fail'}): {case.candidate_answer!r}",
            "",
        ]
    return "\n".join(lines)
