"""The promotion gate: promote only on evidence that the candidate is better.

All of these must hold (the reasons for every one that does not are reported):

1. enough evidence: at least ``eval.min_cases`` primary cases; fewer is
   "insufficient evidence: N cases", which blocks unless
   ``eval.block_on_insufficient`` is false (then rules 2 is skipped);
2. the primary suites improve: the paired bootstrap CI's lower bound of the
   success-rate difference is above ``eval.min_improvement``;
3. no guard suite's success rate drops by more than ``eval.guard_tolerance``;
4. no new violations (a must-not assertion broken where the baseline kept it);
5. held-out loss not worse than the baseline's by more than ``eval.loss_tolerance``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mlx_rsi.config import EvalConfig
from mlx_rsi.eval.scores import Score
from mlx_rsi.eval.stats import PairedDifference


@dataclass
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)  # why not (or, when promoted, why)
    insufficient: bool = False

    def text(self) -> str:
        verdict = "promote" if self.promote else "reject"
        return f"{verdict}: {'; '.join(self.reasons)}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(
    cfg: EvalConfig,
    primary: PairedDifference,
    guards: dict[str, Score],
    overall: Score,
    losses: tuple[float, float] | None,
) -> Decision:
    """Apply the rules in the module doc."""
    problems: list[str] = []
    insufficient = primary.n < cfg.min_cases
    if insufficient:
        note = f"insufficient evidence: {primary.n} cases (eval.min_cases is {cfg.min_cases})"
        if cfg.block_on_insufficient:
            problems.append(note)
    elif primary.low <= cfg.min_improvement:
        problems.append(
            f"primary suites {primary.describe()}: CI lower bound {primary.low:+.0%} is not "
            f"above eval.min_improvement {cfg.min_improvement:.0%}"
        )
    problems += _guard_problems(cfg, guards)
    if overall.new_violations:
        problems.append(f"{overall.new_violations} new violation(s) of must-not assertions")
    problems += _loss_problems(cfg, losses)
    if problems:
        return Decision(False, problems, insufficient)
    reasons = [f"primary suites {primary.describe()}"]
    if insufficient:
        reasons.append(f"insufficient evidence: {primary.n} cases (not blocking)")
    if losses is not None:
        reasons.append(f"held-out loss {losses[0]:.4f} -> {losses[1]:.4f}")
    return Decision(True, reasons, insufficient)


def _guard_problems(cfg: EvalConfig, guards: dict[str, Score]) -> list[str]:
    problems = []
    for name, guard in guards.items():
        drop = guard.baseline_rate - guard.candidate_rate
        if drop > cfg.guard_tolerance + 1e-9:
            problems.append(
                f"guard '{name}' regressed {guard.baseline_rate:.0%} -> "
                f"{guard.candidate_rate:.0%} ({guard.regressions} case(s) no longer pass; "
                f"eval.guard_tolerance is {cfg.guard_tolerance:.0%})"
            )
    return problems


def _loss_problems(cfg: EvalConfig, losses: tuple[float, float] | None) -> list[str]:
    if losses is None:
        return []
    before, after = losses
    if after > before + cfg.loss_tolerance:
        return [f"held-out loss got worse: {before:.4f} -> {after:.4f}"]
    return []
