"""Effectiveness score 0..1 of an example, from the outcome signals of its answer.

Explicit feedback dominates: when the person said how it went (the seed collector's
``metadata.success``, thumbs, a y/n answer), the score is that verdict — success
1.0, failure 0.5, as in the seed guide's pattern analyzer (step 6), so its 0.9
threshold keeps successes; a numeric rating in 0..1 is used as is.

Without feedback the answer starts at ``unlabeled`` (0.9: the person moved on
without complaint) and each signal adds its rule's amount (tool successes raise it
a little; tool errors, rejections, interrupts and corrections lower it), clipped to
0..1. The rule table is ``curate.score_rules``; keys missing there take the defaults
of ``mlx_rsi.config.DEFAULT_SCORE_RULES`` (config validates the names).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mlx_rsi.config import DEFAULT_SCORE_RULES

# Per-kind limits on the total a repeated signal may add or remove.
_CAPS = {"tool_success": 0.1, "tool_error": 0.3}


def score_signals(signals: Iterable[Mapping[str, Any]], rules: Mapping[str, float]) -> float:
    """The score of an answer with these signals (dicts with ``kind`` and ``value``)."""
    table = {**DEFAULT_SCORE_RULES, **rules}
    signals = list(signals)
    verdict = _feedback(signals, table)
    if verdict is not None:
        return verdict
    totals: dict[str, float] = {}
    for signal in signals:
        kind = str(signal.get("kind"))
        if kind in table and not kind.startswith("feedback"):
            totals[kind] = totals.get(kind, 0.0) + table[kind]
    score = table["unlabeled"]
    for kind, total in totals.items():
        cap = _CAPS.get(kind)
        score += max(-cap, min(cap, total)) if cap is not None else total
    return round(min(1.0, max(0.0, score)), 4)


def _feedback(signals: list[Mapping[str, Any]], table: Mapping[str, float]) -> float | None:
    """The last explicit verdict, as a score; None when there is none."""
    verdict: float | None = None
    for signal in signals:
        if signal.get("kind") != "feedback":
            continue
        value = signal.get("value")
        if isinstance(value, bool):
            verdict = table["feedback_positive"] if value else table["feedback_negative"]
        elif isinstance(value, int | float) and 0.0 <= float(value) <= 1.0:
            verdict = float(value)
    return verdict
