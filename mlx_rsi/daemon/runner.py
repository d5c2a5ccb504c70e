"""The daemon: watch the sources, ingest settled changes, run cycles when triggered.

One daemon per workspace: it holds the ``daemon`` lock for its whole life and the
``workspace`` lock only while it ingests or runs a cycle, so ``mlx-rsi train``
works beside an idle daemon and is refused while a cycle runs. The cycle is the
same :func:`mlx_rsi.cycle.run_cycle` ``mlx-rsi train`` runs; nothing of the ML
stack is imported before the first cycle starts.

Signals: SIGTERM and SIGINT set the stop event. During a cycle they are also
forwarded as Ctrl-C, which the backends turn into "checkpoint at the next step
boundary, then stop", so the daemon exits within seconds and the next start
resumes the run. A kill -9 leaves the run marked running; the next cycle resumes
it from its last checkpoint (the cycle's own crash safety).

Training yields to the user: the daemon runs at low priority
(:mod:`.priority`) and, at each progress event of the backend (every
``train.logging_steps`` optimizer steps), waits while the machine is not quiet.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

from mlx_rsi.config import Config
from mlx_rsi.daemon import triggers
from mlx_rsi.daemon.events import Batch, EventSource, WatchdogSource, WatchRoot, watch
from mlx_rsi.daemon.priority import lower_priority
from mlx_rsi.daemon.quiet import IdleMeter, QuietProbe, QuietReport, parse_hours
from mlx_rsi.daemon.state import DaemonState, read_counted, write_counted
from mlx_rsi.errors import InterruptedRun, MlxRsiError
from mlx_rsi.lock import LockHeldError, WorkspaceLock
from mlx_rsi.workspace import Workspace, now_iso

log = logging.getLogger(__name__)
COMMAND = "mlx-rsi watch"
PAUSE_CHECK_SECONDS = 5.0  # how often a paused run re-reads the quiet conditions

CycleFn = Callable[..., Any]


def watch_roots(ws: Workspace, cfg: Config) -> list[WatchRoot]:
    """The configured source folders (ingest's own target rules) with their name filters."""
    from mlx_rsi.ingest import _targets, _wanted

    return [
        WatchRoot(target.path, functools.partial(_wanted_name, _wanted, target))
        for target in _targets(ws, cfg.sources, None, None)
    ]


def _wanted_name(wanted: Callable[[str, Any], bool], target: Any, name: str) -> bool:
    return wanted(name, target)


@dataclass
class Daemon:
    """One daemon over one workspace; collaborators are injectable for tests."""

    ws: Workspace
    cfg: Config
    once: bool = False
    source: EventSource | None = None
    probe: QuietProbe | None = None
    cycle: CycleFn | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    _state: DaemonState | None = None
    _counted: set[str] = field(default_factory=set)
    _new: set[str] | None = None  # None = recount at the next check
    _last_probe: float = 0.0
    _restart: bool = False

    # ------------------------------------------------------------------ life

    def run(self) -> int:
        """Run until stopped (or one pass with ``once``); the exit code."""
        triggers.check_cron(self.cfg.schedule.cron)
        hours = parse_hours(self.cfg.schedule.busy_hours)
        self.ws.store().close()  # a missing workspace is one line, before any lock file
        with WorkspaceLock(self.ws.root, COMMAND, name="daemon"):
            self._state = DaemonState(self.ws.root)
            self._counted = read_counted(self.ws.root)
            self.probe = self.probe or QuietProbe(
                self.cfg.schedule.require_ac_power,
                self.cfg.schedule.min_cpu_idle,
                hours,
                idle=IdleMeter().percent,
            )
            done = lower_priority(self.cfg.schedule.priority)
            log.info("daemon started (PID %s)%s", self.state.get("pid"), _joined(done))
            with self._signals():
                try:
                    code = self._loop()
                finally:
                    self._close_source()
                    self.state.update(state="restarting" if self._restart else "stopped")
                    log.info("daemon %s", "restarting" if self._restart else "stopped")
        if self._restart:
            _reexec()
        return code

    @property
    def state(self) -> DaemonState:
        assert self._state is not None
        return self._state

    def request_stop(self) -> None:
        self.stop.set()
        if self.source is not None:
            self.source.wake()

    def _loop(self) -> int:
        # Observers first, then the catch-up rescan: a file written in between is seen.
        source = None if self.once else self._open_source()
        self._handle(Batch(frozenset(), rescan=True))  # catch up on what changed while down
        if source is None:
            return 0
        schedule = self.cfg.schedule
        for batch in watch(
            source,
            self.stop,
            debounce=schedule.debounce_seconds,
            tick=schedule.check_seconds,
            rescan=schedule.rescan_minutes * 60,
        ):
            self._handle(batch)
        return 0

    def _open_source(self) -> EventSource:
        if self.source is None:
            watchdog = WatchdogSource(watch_roots(self.ws, self.cfg))
            watchdog.start()
            self.source = watchdog
        return self.source

    def _close_source(self) -> None:
        if isinstance(self.source, WatchdogSource):
            self.source.stop()

    @contextmanager
    def _signals(self) -> Iterator[None]:
        def handler(signum: int, frame: FrameType | None) -> None:
            log.info("signal %s: stopping", signal.Signals(signum).name)
            self.request_stop()

        with _installed({signal.SIGTERM: handler, signal.SIGINT: handler}):
            yield

    # ------------------------------------------------------------------ one check

    def _handle(self, batch: Batch) -> None:
        if self.stop.is_set():
            return
        if batch.paths or batch.rescan:
            self._ingest(batch)
        if isinstance(self.source, WatchdogSource) and batch.rescan:
            self.source.refresh()
        decision = self._decide()
        if decision.run and not self.stop.is_set():
            self._run_cycle(decision)
            if not self.once and not self.stop.is_set() and _framework_loaded():
                # An idle daemon holding torch/MLX would keep their memory for days:
                # start afresh (same PID, so launchd/systemd see no exit).
                self._restart = True
                self.request_stop()

    def _ingest(self, batch: Batch) -> None:
        from mlx_rsi.ingest import ingest

        what = f"{len(batch.paths)} changed file(s)" if batch.paths else "rescan"
        self.state.update(state="ingesting", reason=what)
        try:
            # A long first ingest stops on SIGTERM too (what was stored whole is kept).
            with WorkspaceLock(self.ws.root, COMMAND), self._cycle_signals():
                result = ingest(self.ws, self.cfg)
        except KeyboardInterrupt:
            log.info("ingest interrupted; the next start continues it")
            self.stop.set()
            return
        except LockHeldError as e:
            log.info("ingest postponed: %s", e.message)
            self._new = None
            return
        except MlxRsiError as e:
            log.error("ingest failed: %s", e.one_line())
            return
        log.info("%s (%s)", result.summary(), what)
        self.state.update(last_ingest={"at": now_iso(), "summary": result.summary()})
        if result.new_messages or self._new is None:
            self._new = None

    def _decide(self) -> triggers.Decision:
        schedule = self.cfg.schedule
        if self._new is None:
            try:
                self._new = triggers.new_examples(self.ws, self.cfg, self._counted)
            except MlxRsiError as e:
                log.error("counting new examples failed: %s", e.one_line())
                self._new = set()
        now = datetime.now().astimezone()
        last = _parse_time((self.state.get("last_cycle") or {}).get("started_at"))
        next_cron = triggers.next_slot(schedule.cron, now) if schedule.cron else None
        assert self.probe is not None
        quiet = self.probe.read()
        self._last_probe = time.monotonic()
        decision = triggers.decide(
            self.cfg,
            unfinished=triggers.has_unfinished_cycle(self.ws),
            new=len(self._new),
            due=triggers.cron_due(schedule.cron, now, last),
            next_cron=next_cron,
            quiet=quiet,
        )
        if decision.run and self._backing_off():
            decision = triggers.Decision(False, "the last cycle failed; retrying after a rescan")
        self.state.update(
            state="idle" if not decision.run else "starting cycle",
            reason=decision.reason,
            new_examples=len(self._new),
            min_new_examples=schedule.min_new_examples,
            next_cron=next_cron.isoformat(timespec="minutes") if next_cron else None,
            quiet=quiet.to_dict(),
        )
        log.debug("check: %s", decision.reason)
        return decision

    def _backing_off(self) -> bool:
        """The last cycle failed less than a rescan interval ago (kept across restarts)."""
        last = self.state.get("last_cycle") or {}
        failed = _parse_time(last.get("finished_at")) if last.get("outcome") == "failed" else None
        if failed is None:
            return False
        waited = datetime.now().astimezone() - failed
        return waited.total_seconds() < self.cfg.schedule.rescan_minutes * 60

    # ------------------------------------------------------------------ the cycle

    def _run_cycle(self, decision: triggers.Decision) -> None:
        keys = set(self._new or ())
        started = now_iso()
        log.info("cycle starting: %s", decision.reason)
        self.state.update(state="cycle", reason=decision.reason, stage="starting")
        outcome, message = "failed", ""
        try:
            with WorkspaceLock(self.ws.root, COMMAND), self._cycle_signals():
                result = self._cycle_fn()(
                    self.ws,
                    self.cfg,
                    report=self._report,
                    on_train_event=self._on_train_event,
                )
                outcome = "promoted" if result.promoted else "rejected"
                message = f"{result.version} {outcome}"
                self._counted |= keys
                write_counted(self.ws.root, self._counted)
                if result.promoted and self.cfg.publish.auto:
                    message += "; " + self._publish(result.version)
        except LockHeldError as e:
            log.info("cycle postponed: %s", e.message)
            self.state.update(state="idle", stage=None, reason=f"postponed: {e.message}")
            return
        except (InterruptedRun, KeyboardInterrupt):
            outcome, message = "interrupted", "stopped at a step boundary; resumes on restart"
            self.stop.set()
        except MlxRsiError as e:
            message = e.one_line()
        except Exception as e:  # a bug must not take the daemon down (the log has it)
            log.exception("cycle crashed")
            message = f"{type(e).__name__}: {e}"
        finally:
            self._new = None
        log.info("cycle %s: %s", outcome, message)
        cycle = {"started_at": started, "finished_at": now_iso(), "outcome": outcome}
        self.state.update(state="idle", stage=None, last_cycle={**cycle, "message": message})
        if not self.stop.is_set():
            self._decide()  # the state file shows the new counts now; the next check acts

    def _cycle_fn(self) -> CycleFn:
        if self.cycle is None:
            from mlx_rsi.cycle import run_cycle

            self.cycle = run_cycle
        return self.cycle

    @contextmanager
    def _cycle_signals(self) -> Iterator[None]:
        """While working (ingest, a cycle): SIGINT/SIGTERM interrupt as Ctrl-C does, which
        the backends turn into a checkpoint at the next step boundary."""
        handlers = {
            signal.SIGINT: signal.default_int_handler,
            signal.SIGTERM: _forward_as_interrupt(self),
        }
        with _installed(handlers):
            yield

    def _report(self, line: str) -> None:
        log.info("%s", line)
        self.state.update(stage=line)

    def _on_train_event(self, event: Any) -> None:
        if event.kind in ("save", "stop", "end", "start"):
            log.info("train %s at step %s %s", event.kind, event.step, event.message)
        if event.kind == "step":
            log.info("train step %s/%s loss %s", event.step, event.total_steps, event.loss)
            self._yield_to_user(event.step)

    def _yield_to_user(self, step: int) -> None:
        """Wait here (a step boundary) while the machine is not quiet."""
        if self.stop.is_set() or time.monotonic() - self._last_probe < PAUSE_CHECK_SECONDS:
            return
        assert self.probe is not None
        report = self._probe()
        if report.quiet:
            return
        log.info("training paused at step %s: %s", step, ", ".join(report.reasons))
        self.state.update(state="paused", reason=", ".join(report.reasons), quiet=report.to_dict())
        while not self.stop.wait(max(PAUSE_CHECK_SECONDS, self.cfg.schedule.check_seconds / 4)):
            report = self._probe()
            if report.quiet:
                log.info("training resumed at step %s", step)
                self.state.update(state="cycle", reason="quiet again", quiet=report.to_dict())
                return

    def _probe(self) -> QuietReport:
        assert self.probe is not None
        self._last_probe = time.monotonic()
        return self.probe.read()

    def _publish(self, version: str) -> str:
        """publish.auto: push the promoted version; a failure is logged, the cycle stands."""
        from mlx_rsi.publish import publish_version

        self.state.update(stage="publish")
        try:
            return publish_version(self.ws, self.cfg, version, report=self._report).summary()
        except MlxRsiError as e:
            log.error("publish failed: %s", e.one_line())
            return f"publish failed: {e.one_line()}"


@contextmanager
def _installed(handlers: dict[signal.Signals, Any]) -> Iterator[None]:
    """Signal handlers for the block, then the previous ones (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in handlers}
    for signum, handler in handlers.items():
        signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


HEAVY_MODULES = ("torch", "mlx", "transformers")


def _framework_loaded() -> bool:
    return any(name in sys.modules for name in HEAVY_MODULES)


def _reexec() -> None:
    """Replace this process by a fresh daemon with the same command line (locks were
    released on the way out of ``run``; the new process takes them again)."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def _forward_as_interrupt(daemon: Daemon) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("signal %s: checkpointing and stopping", signal.Signals(signum).name)
        daemon.request_stop()
        forward = signal.getsignal(signal.SIGINT)
        if callable(forward):
            forward(signal.SIGINT, frame)

    return handler


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).astimezone()
    except ValueError:
        return None


def _joined(parts: list[str]) -> str:
    return f"; {', '.join(parts)}" if parts else ""


def configure_logging(root: Path, stderr_level: int) -> Path:
    """``logs/daemon.log`` (rotated: 5 x 5 MB) plus stderr at ``stderr_level``."""
    from logging.handlers import RotatingFileHandler

    path = root / "logs" / "daemon.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    file_handler = RotatingFileHandler(path, maxBytes=5 * 1024 * 1024, backupCount=5)
    file_handler.setFormatter(formatter)
    file_handler.setLevel(logging.INFO)
    stream = logging.StreamHandler()
    stream.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    stream.setLevel(stderr_level)
    root_logger = logging.getLogger()
    for handler in list(root_logger.handlers):
        root_logger.removeHandler(handler)
    root_logger.addHandler(file_handler)
    root_logger.addHandler(stream)
    # Stage lines reach the log once, through the cycle's report; other modules: warnings.
    root_logger.setLevel(logging.WARNING)
    logging.getLogger("mlx_rsi.daemon").setLevel(logging.INFO)
    logging.getLogger("mlx_rsi.lock").setLevel(logging.INFO)
    return path
