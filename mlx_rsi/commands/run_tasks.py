"""`mlx-rsi run-tasks`: run a task list through a version, judge, record, show a table."""

from __future__ import annotations

from pathlib import Path

import click

from mlx_rsi.commands import pass_app
from mlx_rsi.context import AppContext
from mlx_rsi.ui import UI


@click.command("run-tasks")
@click.argument("tasks", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--version", "version", default=None, help="Version to run (default: current).")
@click.option(
    "--engine",
    type=click.Choice(["auto", "transformers", "mlx", "gguf"]),
    default=None,
    help="Default serve.engine.",
)
@click.option("--max-tokens", type=int, default=None, help="Answer length (eval.max_new_tokens).")
@pass_app
def run_tasks(
    app: AppContext,
    tasks: Path,
    version: str | None,
    engine: str | None,
    max_tokens: int | None,
) -> None:
    """Run TASKS (a suite YAML or a list of requests) and record each answer.

    Answers of cases with assertions are judged and recorded with their success,
    which the next cycle's curation reads as feedback.

    \b
    Example:
      mlx-rsi run-tasks tasks.yaml --version v1.2
    """
    from mlx_rsi.serve.engines import load_engine
    from mlx_rsi.serve.models import resolve_served
    from mlx_rsi.serve.server import recorder_for
    from mlx_rsi.serve.tasks import TaskResult, load_tasks, run_tasks

    suite = load_tasks(tasks)  # a bad file fails before any model is loaded
    cfg = app.config()
    ws = app.workspace
    conn = ws.store()
    try:
        served = resolve_served(ws, conn, cfg, version, engine or cfg.serve.engine)
    finally:
        conn.close()
    ui = UI(app.quiet)
    model = load_engine(served.engine, served.path, fallback_template=cfg.train.fallback_template)
    with ui.progress(
        f"running {len(suite.cases)} tasks on {served.version}", len(suite.cases)
    ) as bar:
        done: list[TaskResult] = []

        def progress(result: TaskResult) -> None:
            done.append(result)
            bar.update(len(done))

        results = run_tasks(
            suite,
            model,
            recorder_for(ws, cfg),
            version=served.version,
            max_tokens=max_tokens or cfg.eval.max_new_tokens,
            on_result=progress,
        )
    ui.table(f"{suite.name} on {served.version}", _COLUMNS, [_row(r) for r in results])
    judged = [r for r in results if r.judged]
    passed = sum(r.passed for r in judged)
    violations = sum(len(r.violations) for r in judged)
    summary = f"{passed}/{len(judged)} judged tasks passed, {violations} violations"
    unjudged = len(results) - len(judged)
    ui.line(summary + (f"; {unjudged} recorded without assertions" if unjudged else ""))


_COLUMNS = ["case", "category", "result", "answer"]


def _row(result: object) -> list[str]:
    from mlx_rsi.serve.tasks import TaskResult

    assert isinstance(result, TaskResult)
    verdict = "-" if not result.judged else ("pass" if result.passed else "FAIL")
    if result.violations:
        verdict += f" ({len(result.violations)} violation)"
    answer = " ".join(result.answer.split())
    return [
        result.case.id,
        result.case.category,
        verdict,
        answer[:60] + ("…" if len(answer) > 60 else ""),
    ]
