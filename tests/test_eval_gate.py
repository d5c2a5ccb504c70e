"""Paired bootstrap, scores and the gate's rules (no model needed)."""

from __future__ import annotations

from mlx_rsi.config import EvalConfig
from mlx_rsi.eval.gate import decide
from mlx_rsi.eval.runner import CaseResult
from mlx_rsi.eval.scores import by, score
from mlx_rsi.eval.stats import paired_bootstrap
from mlx_rsi.eval.suites import Outcome


def result(before: bool, after: bool, kind: str = "primary", violation: bool = False) -> CaseResult:
    bad = ("not-icontains: x",) if violation else ()
    return CaseResult(
        "s" if kind == "primary" else "g",
        kind,
        "1",
        "q",
        "general",
        "a",
        "b",
        Outcome(before),
        Outcome(after and not violation, bad, bad),
    )


def test_bootstrap_is_seeded_and_brackets_the_difference() -> None:
    base = [False] * 20
    cand = [True] * 15 + [False] * 5
    one = paired_bootstrap(base, cand, seed=3)
    assert one == paired_bootstrap(base, cand, seed=3)
    assert one.difference == 0.75 and one.wins == 15 and one.losses == 0
    assert 0.5 < one.low <= 0.75 <= one.high <= 1.0


def test_bootstrap_of_no_change_includes_zero() -> None:
    base = [True, False] * 10
    cand = [False, True] * 10
    diff = paired_bootstrap(base, cand)
    assert diff.difference == 0.0 and diff.low < 0 < diff.high


def test_gate_promotes_on_clear_improvement() -> None:
    primary = paired_bootstrap([False] * 12, [True] * 12)
    guards = by([result(True, True, "guard")], "suite")
    decision = decide(EvalConfig(), primary, guards, score([]), (2.0, 1.5))
    assert decision.promote, decision.reasons


def test_gate_reports_insufficient_evidence_and_config_decides() -> None:
    primary = paired_bootstrap([False] * 3, [True] * 3)
    blocked = decide(EvalConfig(min_cases=10), primary, {}, score([]), None)
    assert not blocked.promote and blocked.insufficient
    assert blocked.reasons == ["insufficient evidence: 3 cases (eval.min_cases is 10)"]
    allowed = decide(
        EvalConfig(min_cases=10, block_on_insufficient=False), primary, {}, score([]), None
    )
    assert allowed.promote and "insufficient evidence: 3 cases" in allowed.text()


def test_gate_lists_every_reason() -> None:
    primary = paired_bootstrap([True, False] * 6, [False, True] * 6)
    guards = [result(True, False, "guard"), result(True, True, "guard")]
    violating = [result(False, True, violation=True)]
    decision = decide(
        EvalConfig(), primary, by(guards, "suite"), score(guards + violating), (1.0, 1.2)
    )
    assert not decision.promote
    text = decision.text()
    assert "CI lower bound" in text
    assert "guard 'g' regressed 100% -> 50%" in text
    assert "1 new violation(s)" in text
    assert "held-out loss got worse: 1.0000 -> 1.2000" in text


def test_guard_tolerance_allows_small_drops() -> None:
    primary = paired_bootstrap([False] * 12, [True] * 12)
    guards = [result(True, True, "guard")] * 9 + [result(True, False, "guard")]
    ok = decide(EvalConfig(guard_tolerance=0.1), primary, by(guards, "suite"), score([]), None)
    assert ok.promote
    strict = decide(EvalConfig(guard_tolerance=0.0), primary, by(guards, "suite"), score([]), None)
    assert not strict.promote
