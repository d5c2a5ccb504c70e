"""Run a list of tasks through a version, judge each answer, record it with its outcome.

A task file is a suite (``cases:`` with assertions, mlx_rsi.eval.suites) or, as
in the seed guide, a plain list of requests (a YAML list of strings, or
``tasks: [...]``), whose answers are recorded unjudged. A judged answer is
recorded with ``metadata.success`` (passed or not), which curation reads as
explicit feedback: running tasks is one more way new training data arrives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlx_rsi.eval.suites import Case, Suite, SuiteError, judge, load_suite, parse_suite
from mlx_rsi.serve.engines import Engine, complete
from mlx_rsi.serve.recorder import Recorder, new_request_id


@dataclass(frozen=True)
class TaskResult:
    case: Case
    answer: str
    judged: bool
    passed: bool
    violations: tuple[str, ...]
    failed: tuple[str, ...]


def load_tasks(path: Path) -> Suite:
    """A suite file, or a plain list of requests turned into unjudged cases."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise SuiteError(f"task file not found: {path}") from e
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SuiteError(f"{path}: cannot read the task file: {first}") from e
    if isinstance(raw, dict) and "tasks" in raw and "cases" not in raw:
        raw = raw["tasks"]
    if isinstance(raw, list) and raw and all(isinstance(item, str) for item in raw):
        cases = tuple(Case(f"task-{n}", text) for n, text in enumerate(raw, 1))
        return Suite(path.stem, "primary", cases, str(path))
    if raw is None:
        raise SuiteError(f"{path}: the task file is empty", hint="list tasks under cases:")
    if isinstance(raw, dict):
        return parse_suite(raw, str(path), default_name=path.stem)
    return load_suite(path)


def run_tasks(
    suite: Suite,
    engine: Engine,
    recorder: Recorder,
    *,
    version: str,
    max_tokens: int,
    on_result: Callable[[TaskResult], None] = lambda _r: None,
) -> list[TaskResult]:
    results: list[TaskResult] = []
    for case in suite.cases:
        messages = [{"role": "user", "content": case.input}]
        answer = complete(engine, messages, max_tokens=max_tokens, temperature=0.0).strip()
        result = _judge(case, answer)
        recorder.record_interaction(
            new_request_id(), messages, answer, _metadata(result, version, suite)
        )
        results.append(result)
        on_result(result)
    return results


def _judge(case: Case, answer: str) -> TaskResult:
    if not case.asserts:
        return TaskResult(case, answer, False, False, (), ())
    outcome = judge(case, answer)
    return TaskResult(case, answer, True, outcome.passed, outcome.violations, outcome.failed)


def _metadata(result: TaskResult, version: str, suite: Suite) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "version": version,
        "source": "run-tasks",
        "suite": suite.name,
        "case": result.case.id,
        "category": result.case.category,
    }
    if result.judged:
        metadata["success"] = result.passed
        if result.failed:
            metadata["failed_assertions"] = list(result.failed)
    return metadata
