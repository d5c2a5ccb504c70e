"""Triggers: cron validation and due times, the decision, new-example counting keys,
and the pause at a training step boundary (a scripted quiet probe, no training)."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import datetime

import pytest

from mlx_rsi.config import Config, ScheduleConfig
from mlx_rsi.daemon import runner, triggers
from mlx_rsi.daemon.quiet import QuietReport
from mlx_rsi.errors import ConfigError
from mlx_rsi.workspace import Workspace

QUIET = QuietReport(True, 90.0, None, ())
BUSY = QuietReport(False, 90.0, None, ("on battery power",))


def config(**schedule) -> Config:
    return replace(Config(), schedule=ScheduleConfig(**schedule))


@pytest.mark.parametrize("bad", ["61 * * * *", "every monday", "0 2 * *"])
def test_bad_cron_is_one_line(bad):
    with pytest.raises(ConfigError) as info:
        triggers.check_cron(bad)
    line = info.value.one_line()
    assert f"schedule.cron: '{bad}' is not a valid cron expression" in line
    assert "\n" not in line


def test_cron_due_and_next():
    monday_2am = "0 2 * * 1"
    triggers.check_cron(monday_2am)
    now = datetime(2026, 12, 1, 12, 0)  # a Tuesday
    assert triggers.cron_due(monday_2am, now, None)
    assert triggers.cron_due(monday_2am, now, datetime(2026, 11, 29, 9, 0))
    assert not triggers.cron_due(monday_2am, now, datetime(2026, 11, 30, 3, 0))
    assert triggers.next_slot(monday_2am, now) == datetime(2026, 12, 7, 2, 0)
    assert triggers.cron_due(None, now, now)


def test_decide():
    cfg = config(min_new_examples=5)
    args = dict(unfinished=False, new=5, due=True, next_cron=None, quiet=QUIET)
    assert triggers.decide(cfg, **args).run
    below = triggers.decide(cfg, **{**args, "new": 4})
    assert not below.run and below.reason == "4 new high-quality examples of 5 needed"
    waiting = triggers.decide(cfg, **{**args, "due": False, "next_cron": datetime(2026, 12, 7, 2)})
    assert not waiting.run and "next scheduled time 2026-12-07T02:00" in waiting.reason
    loud = triggers.decide(cfg, **{**args, "quiet": BUSY})
    assert not loud.run and loud.reason.endswith("waiting for quiet: on battery power")
    resume = triggers.decide(cfg, **{**args, "unfinished": True, "new": 0, "due": False})
    assert resume.run and resume.resume


def test_example_key_matches_dataset_line():
    import hashlib

    import orjson

    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    line = orjson.dumps({"messages": messages}, option=orjson.OPT_SORT_KEYS)
    assert triggers.example_key(messages) == hashlib.sha256(line).hexdigest()[:32]


class ScriptedProbe:
    def __init__(self, readings: list[QuietReport]) -> None:
        self.readings = readings
        self.calls = 0

    def read(self) -> QuietReport:
        self.calls += 1
        return self.readings.pop(0) if self.readings else QUIET


def paused_daemon(tmp_path, readings, monkeypatch) -> runner.Daemon:
    monkeypatch.setattr(runner, "PAUSE_CHECK_SECONDS", 0.05)
    daemon = runner.Daemon(Workspace(tmp_path), config(check_seconds=1.0))
    daemon.probe = ScriptedProbe(readings)  # type: ignore[assignment]
    daemon._state = runner.DaemonState(tmp_path)
    return daemon


def test_training_pauses_while_busy_and_resumes(tmp_path, monkeypatch):
    daemon = paused_daemon(tmp_path, [BUSY, BUSY, BUSY, QUIET], monkeypatch)
    daemon._yield_to_user(7)
    assert daemon.probe.calls == 4  # type: ignore[attr-defined]
    assert daemon.state.get("state") == "cycle" and daemon.state.get("reason") == "quiet again"


def test_stop_ends_a_pause(tmp_path, monkeypatch):
    daemon = paused_daemon(tmp_path, [BUSY] * 1000, monkeypatch)
    threading.Timer(0.3, daemon.request_stop).start()
    started = time.monotonic()
    daemon._yield_to_user(3)
    assert time.monotonic() - started < 10
    assert daemon.state.get("state") == "paused"


def test_cycle_pauses_at_a_step_event_and_finishes(tmp_path, monkeypatch):
    """Orchestration only (a scripted cycle emits the backend's events): busy at the first
    step event, quiet two readings later; the cycle waits at that boundary, then completes."""
    from types import SimpleNamespace

    from backends.base import TrainEvent

    daemon = paused_daemon(tmp_path, [BUSY, BUSY, QUIET], monkeypatch)
    seen: list[tuple[int, str]] = []

    def cycle(ws, cfg, *, report, on_train_event):
        for step in (1, 2, 3):
            daemon._last_probe = 0.0  # each event is due for a probe
            on_train_event(TrainEvent("step", step=step, total_steps=3, loss=1.0))
            seen.append((step, daemon.state.get("state")))
        report("train: done")
        return SimpleNamespace(promoted=True, version="v1.1")

    daemon.cycle = cycle
    monkeypatch.setattr(daemon, "_decide", lambda: None)
    daemon._run_cycle(triggers.Decision(True, "test"))
    assert daemon.probe.calls == 5  # type: ignore[attr-defined]  # step 1 (+2 in the wait), 2, 3
    assert seen == [(1, "cycle"), (2, "cycle"), (3, "cycle")]
    last = daemon.state.get("last_cycle")
    assert last["outcome"] == "promoted" and last["message"] == "v1.1 promoted"
    assert (tmp_path / "daemon" / "counted.json").is_file()
