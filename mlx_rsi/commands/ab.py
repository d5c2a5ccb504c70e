"""`mlx-rsi ab report`: which served version people rate better, and whether that is sure yet."""

from __future__ import annotations

import json

import click

from mlx_rsi.commands import pass_app
from mlx_rsi.context import AppContext
from mlx_rsi.ui import UI


@click.group()
def ab() -> None:
    """A/B tests between served versions (mlx-rsi serve --ab ...)."""


@ab.command("report")
@click.argument("versions", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_app
def report(app: AppContext, versions: tuple[str, ...], as_json: bool) -> None:
    """Requests, feedback, success (95 % interval) and latency per served version.

    \b
    Example:
      mlx-rsi ab report
      mlx-rsi ab report v1.1 v1.2 --json
    """
    from mlx_rsi.names import check_name
    from mlx_rsi.serve.abtest import ab_report
    from mlx_rsi.serve.recorder import read_records

    for name in versions:
        check_name(name, "version")
    result = ab_report(read_records(app.workspace.sessions_dir), list(versions) or None)
    if as_json:
        click.echo(json.dumps(_plain(result), indent=2))
        return
    ui = UI(app.quiet)
    ui.table("A/B report", _COLUMNS, [_row(arm) for arm in result.arms])
    ui.line(result.verdict)


_COLUMNS = [
    "version",
    "requests",
    "rated",
    "rated %",
    "success",
    "95% interval",
    "p50 ms",
    "p95 ms",
]


def _row(arm: object) -> list[str]:
    from mlx_rsi.serve.abtest import ArmStats

    assert isinstance(arm, ArmStats)
    rate = arm.success_rate
    interval = arm.success_interval()
    return [
        arm.version,
        str(arm.requests),
        str(arm.feedback),
        f"{arm.feedback_rate:.0%}",
        "-" if rate is None else f"{rate:.0%}",
        "-" if interval is None else f"{interval[0]:.0%}–{interval[1]:.0%}",
        _ms(arm.latency(0.5)),
        _ms(arm.latency(0.95)),
    ]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _plain(result: object) -> dict[str, object]:
    from mlx_rsi.serve.abtest import AbReport

    assert isinstance(result, AbReport)
    return {
        "leader": result.leader,
        "p_value": result.p_value,
        "enough_evidence": result.enough_evidence,
        "verdict": result.verdict,
        "arms": [
            {
                "version": a.version,
                "requests": a.requests,
                "feedback": a.feedback,
                "successes": a.successes,
                "success_rate": a.success_rate,
                "success_interval": a.success_interval(),
                "latency_ms_p50": a.latency(0.5),
                "latency_ms_p95": a.latency(0.95),
                "latency_ms_p99": a.latency(0.99),
            }
            for a in result.arms
        ],
    }
