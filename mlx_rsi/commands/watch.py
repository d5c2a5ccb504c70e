"""`mlx-rsi watch`: run the daemon; `status`, `stop`, `install`, `uninstall` manage it."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from mlx_rsi.commands import config_option, pass_app
from mlx_rsi.context import AppContext
from mlx_rsi.errors import MlxRsiError, WorkspaceError

START_TIMEOUT = 30.0


@click.group(invoke_without_command=True)
@config_option
@click.option("--once", is_flag=True, help="Ingest, check the triggers, run a cycle if due, exit.")
@click.option(
    "--foreground",
    is_flag=True,
    help="Run in this terminal (services use this) instead of detaching.",
)
@click.pass_context
def watch(ctx: click.Context, once: bool, foreground: bool) -> None:
    """Watch the session folders and run a cycle when the triggers say so.

    A cycle starts when there are schedule.min_new_examples new high-quality
    examples (at a schedule.cron time, when set) and the machine is quiet: on
    AC power, CPU mostly idle, outside schedule.busy_hours. Training runs at
    low priority and pauses while the machine is busy. Log: logs/daemon.log.

    \b
    Examples:
      mlx-rsi watch                 # start in the background
      mlx-rsi watch --foreground    # run here; Ctrl-C checkpoints and stops
      mlx-rsi watch status
      mlx-rsi watch stop
      mlx-rsi watch install         # launchd agent / systemd user unit
    """
    if ctx.invoked_subcommand is not None:
        if once or foreground:
            raise click.UsageError("--once/--foreground go without a subcommand")
        return
    app = ctx.ensure_object(AppContext)
    if once or foreground:
        _run(app, once=once)
    else:
        _start_detached(app)


def _run(app: AppContext, *, once: bool) -> None:
    from mlx_rsi.daemon.runner import Daemon, configure_logging

    ws = app.workspace
    cfg = app.config()
    ws.store().close()
    configure_logging(ws.root, logging.ERROR if app.quiet else logging.INFO)
    code = Daemon(ws, cfg, once=once).run()
    if code:
        sys.exit(code)


def _start_detached(app: AppContext) -> None:
    from mlx_rsi.daemon.service import daemon_argv
    from mlx_rsi.lock import LockHeldError, lock_holder

    ws = app.workspace
    app.config()  # a bad config fails here, not in the background
    ws.store().close()
    holder = lock_holder(ws.root, "daemon")
    if holder is not None:
        raise LockHeldError(
            f"a daemon already watches {ws.root}: {holder.describe()}",
            hint="see `mlx-rsi watch status`, or `mlx-rsi watch stop` it first",
        )
    stderr_path = ws.logs_dir / "daemon.stderr.log"
    stderr_path.parent.mkdir(parents=True, exist_ok=True)
    with open(stderr_path, "ab") as err:
        child = subprocess.Popen(
            daemon_argv(ws.root, app.config_path),
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
            start_new_session=True,
            cwd=ws.root,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        holder = lock_holder(ws.root, "daemon")
        if holder is not None and holder.pid == child.pid:
            click.echo(f"mlx-rsi watch: started (PID {child.pid}) for {ws.root}")
            click.echo(f"  log: {ws.logs_dir / 'daemon.log'}")
            click.echo("  mlx-rsi watch status | mlx-rsi watch stop")
            return
        if child.poll() is not None:
            raise MlxRsiError(f"the daemon exited at start: {_last_line(stderr_path)}")
        time.sleep(0.1)
    raise MlxRsiError(f"the daemon (PID {child.pid}) did not start within {START_TIMEOUT:.0f} s")


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no output)"
    return lines[-1] if lines else "(no output)"


@watch.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_app
def status(app: AppContext, as_json: bool) -> None:
    """Is the daemon running, what is it doing, why is it waiting."""
    from mlx_rsi.daemon.state import read_state
    from mlx_rsi.lock import lock_holder

    root = app.workspace.root
    holder = lock_holder(root, "daemon")
    state = read_state(root) or {}
    if as_json:
        running = {"running": holder is not None, "pid": holder.pid if holder else None}
        click.echo(json.dumps({**state, **running}, indent=2, sort_keys=True))
        return
    for line in _status_lines(holder.describe() if holder else None, state):
        click.echo(line)
    click.echo(f"log:        {root / 'logs' / 'daemon.log'}")


def _status_lines(holder: str | None, state: dict[str, Any]) -> list[str]:
    lines = [f"daemon:     {'running, ' + holder if holder else 'not running'}"]
    if not state:
        return lines
    if holder or state.get("state") == "stopped":
        lines.append(f"state:      {state.get('state', '?')} since {state.get('since', '?')}")
    else:
        lines.append(
            f"state:      was '{state.get('state')}' at {state.get('updated_at')} and then"
            " died (killed or crashed); the next start resumes its work"
        )
    if state.get("reason"):
        lines.append(f"why:        {state['reason']}")
    if state.get("stage"):
        lines.append(f"stage:      {state['stage']}")
    if "new_examples" in state:
        lines.append(
            f"trigger:    {state['new_examples']} of {state.get('min_new_examples')} new examples"
            + (f"; next scheduled {state['next_cron']}" if state.get("next_cron") else "")
        )
    quiet = state.get("quiet") or {}
    if quiet:
        power = {True: "AC", False: "battery", None: "unknown"}[quiet.get("ac_power")]
        idle = quiet.get("cpu_idle")
        lines.append(
            f"machine:    power {power}, CPU {'?' if idle is None else idle}% idle"
            + ("" if quiet.get("quiet") else f" — not quiet: {', '.join(quiet['reasons'])}")
        )
    last = state.get("last_cycle")
    if last:
        outcome = f"{last.get('outcome')} {last.get('message', '')}".strip()
        lines.append(f"last cycle: {outcome} ({last.get('finished_at')})")
    return lines


@watch.command()
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for it to exit.")
@pass_app
def stop(app: AppContext, timeout: float) -> None:
    """Stop the running daemon (it checkpoints a training run first)."""
    from mlx_rsi.lock import lock_holder

    root = app.workspace.root
    holder = lock_holder(root, "daemon")
    if holder is None:
        click.echo(f"no daemon is running for {root}")
        return
    try:
        os.kill(holder.pid, signal.SIGTERM)
    except ProcessLookupError:
        click.echo(f"no daemon is running for {root}")
        return
    deadline = time.monotonic() + timeout
    while lock_holder(root, "daemon") is not None:
        if time.monotonic() > deadline:
            raise WorkspaceError(
                f"the daemon (PID {holder.pid}) did not stop within {timeout:.0f} s",
                hint=f"see {root / 'logs' / 'daemon.log'}; `kill -9 {holder.pid}` is safe",
            )
        time.sleep(0.2)
    click.echo(f"stopped the daemon (PID {holder.pid})")


@watch.command()
@click.option("--timer", is_flag=True, help="systemd: an hourly `watch --once` timer instead.")
@click.option("--dry-run", is_flag=True, help="Print the file instead of writing it.")
@pass_app
def install(app: AppContext, timer: bool, dry_run: bool) -> None:
    """Install a launchd agent (macOS) or systemd user unit (Linux) for this workspace."""
    from mlx_rsi.daemon import service

    root = app.workspace.root
    app.workspace.store().close()
    files, contents = service.plan(
        root, app.config_path, platform=sys.platform, home=Path.home(), timer=timer
    )
    if dry_run:
        for path, data in contents.items():
            click.echo(f"# {path}\n{data.decode()}")
        return
    service.install(root, app.config_path, platform=sys.platform, home=Path.home(), timer=timer)
    for path in files.paths:
        click.echo(f"wrote {path}")
    click.echo("enable it with:")
    for line in files.enable:
        click.echo(f"  {line}")


@watch.command()
@pass_app
def uninstall(app: AppContext) -> None:
    """Remove this workspace's launchd agent / systemd unit."""
    from mlx_rsi.daemon import service

    files = service.uninstall(app.workspace.root, platform=sys.platform, home=Path.home())
    if not files.paths:
        click.echo("no service file installed for this workspace")
        return
    for path in files.paths:
        click.echo(f"removed {path}")
    if files.disable:
        click.echo("if it was enabled, also run:")
    for line in files.disable:
        click.echo(f"  {line}")
