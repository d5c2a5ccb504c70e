"""Run suites through two models and judge every answer.

Both models answer the same prompts greedily (temperature 0) in one batched
``Backend.generate`` call each; the backends seed nothing random when greedy, so
the same model gives the same answers. A model is a folder plus an optional
adapter (:class:`ModelRef`), which covers the base model, a fused version and a
candidate that is still only an adapter.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.base import Backend
from mlx_rsi.errors import DatasetError
from mlx_rsi.eval.suites import Outcome, Suite, judge

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelRef:
    name: str  # a version name or "base"
    model_dir: Path
    adapter_dir: Path | None = None

    def describe(self) -> str:
        adapter = f" + {self.adapter_dir}" if self.adapter_dir else ""
        return f"{self.name} ({self.model_dir}{adapter})"


@dataclass(frozen=True)
class CaseResult:
    suite: str
    kind: str
    case_id: str
    input: str
    category: str
    baseline_answer: str
    candidate_answer: str
    baseline: Outcome
    candidate: Outcome

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "kind": self.kind,
            "id": self.case_id,
            "input": self.input,
            "category": self.category,
            "baseline_answer": self.baseline_answer,
            "candidate_answer": self.candidate_answer,
            "baseline_pass": self.baseline.passed,
            "candidate_pass": self.candidate.passed,
            "baseline_violations": list(self.baseline.violations),
            "candidate_violations": list(self.candidate.violations),
            "candidate_failed": list(self.candidate.failed),
        }


def answer(
    backend: Backend,
    model: ModelRef,
    suites: list[Suite],
    *,
    max_tokens: int,
    template: str,
    fallback: str | None = None,
) -> list[str]:
    """The model's greedy answers to every case of ``suites``, in order.

    An input asked by several suites (a version's held-out suite is also the next
    version's guard) is generated once: greedy answers to the same prompt are the same.
    """
    inputs = [c.input for s in suites for c in s.cases]
    unique = list(dict.fromkeys(inputs))
    if not unique:
        return []
    log.info("generating %d answers with %s", len(unique), model.describe())
    answers = backend.generate(
        model.model_dir,
        model.adapter_dir,
        [[{"role": "user", "content": text}] for text in unique],
        max_tokens=max_tokens,
        temperature=0.0,
        template=template,
        fallback_template=fallback,
    )
    by_input = dict(zip(unique, answers, strict=True))
    return [by_input[text] for text in inputs]


def run_suites(
    backend: Backend,
    baseline: ModelRef,
    candidate: ModelRef,
    suites: list[Suite],
    *,
    max_tokens: int,
    template: str,
    fallback: str | None = None,
) -> list[CaseResult]:
    """Both models' answers to every case, judged.

    ``fallback``: the configured fallback template, used for a model without an adapter
    (a base model has no recorded training settings), so the baseline is prompted the way
    the candidate was trained.
    """
    kwargs: dict[str, Any] = {"max_tokens": max_tokens, "template": template, "fallback": fallback}
    before = answer(backend, baseline, suites, **kwargs)
    after = answer(backend, candidate, suites, **kwargs)
    pairs = iter(zip(before, after, strict=True))
    results = []
    for suite in suites:
        for case in suite.cases:
            old, new = next(pairs)
            results.append(
                CaseResult(
                    suite.name,
                    suite.kind,
                    case.id,
                    case.input,
                    case.category,
                    old,
                    new,
                    judge(case, old),
                    judge(case, new),
                )
            )
    return results


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


def heldout_losses(
    backend: Backend,
    baseline: ModelRef,
    candidate: ModelRef,
    split: Path,
    *,
    template: str,
    fallback: str | None = None,
) -> tuple[float, float]:
    """Mean token loss of both models on the held-out split (``fallback`` as in run_suites)."""
    kwargs: dict[str, Any] = {"template": template, "fallback_template": fallback}
    before = backend.loss(baseline.model_dir, baseline.adapter_dir, split, **kwargs)
    after = backend.loss(candidate.model_dir, candidate.adapter_dir, split, **kwargs)
    return before, after
