"""Judged cases → success rates per suite, per kind and per category.

A *violation* is a negated assertion the answer broke (it said what it must
not). A *new violation* is one the candidate commits on a case where the
baseline committed none; a *regression* is a case the baseline passed and the
candidate fails.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from mlx_rsi.eval.runner import CaseResult


@dataclass(frozen=True)
class Score:
    n: int
    baseline_passed: int
    candidate_passed: int
    baseline_violations: int
    candidate_violations: int
    new_violations: int
    regressions: int

    @property
    def baseline_rate(self) -> float:
        return self.baseline_passed / self.n if self.n else 0.0

    @property
    def candidate_rate(self) -> float:
        return self.candidate_passed / self.n if self.n else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "baseline_rate": self.baseline_rate,
            "candidate_rate": self.candidate_rate,
        }


def score(results: list[CaseResult]) -> Score:
    return Score(
        n=len(results),
        baseline_passed=sum(r.baseline.passed for r in results),
        candidate_passed=sum(r.candidate.passed for r in results),
        baseline_violations=sum(bool(r.baseline.violations) for r in results),
        candidate_violations=sum(bool(r.candidate.violations) for r in results),
        new_violations=sum(is_new_violation(r) for r in results),
        regressions=sum(r.baseline.passed and not r.candidate.passed for r in results),
    )


def is_new_violation(result: CaseResult) -> bool:
    return bool(result.candidate.violations) and not result.baseline.violations


def by(results: list[CaseResult], key: str) -> dict[str, Score]:
    """Scores grouped by a CaseResult attribute (``suite``, ``kind``, ``category``)."""
    groups: dict[str, list[CaseResult]] = defaultdict(list)
    for result in results:
        groups[str(getattr(result, key))].append(result)
    return {name: score(group) for name, group in sorted(groups.items())}
