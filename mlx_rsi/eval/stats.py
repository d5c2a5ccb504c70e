"""Paired comparison of two models on the same cases.

lm-evaluation-harness compares two models with a paired bootstrap over
per-sample results (FACTS.md): resample the *cases* with replacement, keeping each
case's pair (baseline, candidate) together, and read the confidence interval of
the mean difference from the percentiles. Seeded, so a report is reproducible.
McNemar's discordant counts (wins, losses) are reported beside it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PairedDifference:
    n: int
    baseline_rate: float
    candidate_rate: float
    difference: float  # candidate - baseline (fraction of cases)
    low: float  # confidence interval of the difference
    high: float
    confidence: float
    wins: int  # cases only the candidate passes
    losses: int  # cases only the baseline passes

    def describe(self) -> str:
        pct = round(self.confidence * 100)
        return (
            f"{self.baseline_rate:.0%} -> {self.candidate_rate:.0%} "
            f"({self.difference:+.0%}, {pct}% CI {self.low:+.0%}..{self.high:+.0%}, n={self.n})"
        )


def paired_bootstrap(
    baseline: Sequence[bool],
    candidate: Sequence[bool],
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedDifference:
    """The mean difference (candidate - baseline) and its bootstrap CI."""
    if len(baseline) != len(candidate):
        raise ValueError("paired results must have the same length")
    n = len(baseline)
    diffs = [int(c) - int(b) for b, c in zip(baseline, candidate, strict=True)]
    if n == 0:
        return PairedDifference(0, 0.0, 0.0, 0.0, 0.0, 0.0, confidence, 0, 0)
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(diffs, k=n)) / n for _ in range(max(1, resamples)))
    tail = (1.0 - confidence) / 2
    low = means[int(tail * (len(means) - 1))]
    high = means[round((1.0 - tail) * (len(means) - 1))]
    return PairedDifference(
        n=n,
        baseline_rate=sum(baseline) / n,
        candidate_rate=sum(candidate) / n,
        difference=sum(diffs) / n,
        low=low,
        high=high,
        confidence=confidence,
        wins=diffs.count(1),
        losses=diffs.count(-1),
    )
