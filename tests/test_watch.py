"""`mlx-rsi watch` as a user runs it: subprocess daemons, real watchdog, a tiny model."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mlx_rsi.lock import lock_holder

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "sessions"
EXE = Path(sys.executable).with_name("mlx-rsi")


def write_config(ws: Path, model: Path | None, *, min_new: int, steps: int = 4, extra: str = ""):
    (ws / "mlx-rsi.yaml").write_text(
        f"""
model:
  base: {model or "no-model-needed"}
train:
  backend: peft
  max_steps: {steps}
  per_device_train_batch_size: 4
  gradient_accumulation_steps: 1
  learning_rate: 3.0e-3
  lora_dropout: 0.0
  save_steps: 2
  logging_steps: 1
  cutoff_len: 256
eval:
  max_new_tokens: 4
  block_on_insufficient: false
schedule:
  min_new_examples: {min_new}
  debounce_seconds: 1.0
  check_seconds: 1.0
  require_ac_power: false
  min_cpu_idle: 0
  priority: normal
{extra}"""
    )


@pytest.fixture
def ws(cli) -> Path:
    assert cli("init", "--no-standard-sources").exit_code == 0
    return cli.workspace


class Daemon:
    def __init__(self, ws: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.ws = ws
        self.log = log
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(EXE), "--workspace", str(ws), "watch", "--foreground"],
                stdout=out,
                stderr=out,
                env=env,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def state(self) -> dict:
        try:
            return json.loads((self.ws / "daemon" / "state.json").read_text())
        except (OSError, ValueError):
            return {}

    def wait(self, what: str, check: Callable[[], object], timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert self.proc.poll() is None, f"daemon exited waiting for {what}:\n{self.output()}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{self.output()}"
            time.sleep(0.2)

    def finish(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=120)


@pytest.fixture
def daemons(tmp_path) -> Iterator[Callable[[Path], Daemon]]:
    started: list[Daemon] = []

    def start(ws: Path, env: dict[str, str] | None = None) -> Daemon:
        daemon = Daemon(ws, tmp_path / f"daemon-{len(started)}.log", env)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()


def query(ws: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(ws / "state.db") as conn:
        return [tuple(r) for r in conn.execute(sql)]


def test_threshold_then_exactly_one_cycle_promoted_and_published(cli, ws, daemons, tiny_llama_dir):
    from hub_server import HubServer

    hub = HubServer().__enter__()  # loopback Hub; publish.auto pushes the promoted version
    publish = f"publish:\n  auto: true\n  repo_id: me/tiny\n  endpoint: {hub.url}\n"
    write_config(ws, tiny_llama_dir, min_new=10, extra=publish)
    daemon = daemons(ws, {"HF_HUB_OFFLINE": "0", "HF_TOKEN": "hf_testTOKENabcdef1234567890"})
    daemon.wait("first check", lambda: daemon.state().get("new_examples") == 0)
    shutil.copytree(EXAMPLES / "bugfix-day", ws / "sessions" / "bugfix-day")
    daemon.wait("a few new examples", lambda: daemon.state().get("new_examples", 0) > 0)
    assert daemon.state()["new_examples"] < 10
    assert "of 10 needed" in daemon.state()["reason"]
    assert query(ws, "SELECT COUNT(*) FROM cycles") == [(0,)]
    status = cli("watch", "status")
    assert "daemon:     running, PID" in status.output and "of 10 needed" in status.output

    for folder in sorted(EXAMPLES.iterdir()):
        shutil.copytree(folder, ws / "sessions" / folder.name, dirs_exist_ok=True)
    daemon.wait("a promoted version", lambda: daemon.state().get("last_cycle"), timeout=600)

    def restarted_and_idle() -> bool:  # torch was loaded: the daemon starts afresh
        log = (ws / "logs" / "daemon.log").read_text()
        return log.count("daemon started (PID") == 2 and daemon.state().get("state") == "idle"

    daemon.wait("the restart, then the idle state", restarted_and_idle)
    time.sleep(3)  # three more checks: nothing new, so no second cycle
    assert query(ws, "SELECT status FROM cycles") == [("done",)]
    assert query(ws, "SELECT name FROM current_version") == [("v1.1",)]
    assert (ws / "models" / "v1.1" / "hf" / "config.json").is_file()
    state = daemon.state()
    assert state["last_cycle"]["outcome"] == "promoted" and state["new_examples"] == 0
    log = (ws / "logs" / "daemon.log").read_text()
    for stage in ("ingest", "curate", "dataset", "train", "evaluate"):
        assert f" {stage}" in log
    assert "cycle promoted: v1.1 promoted; publish: published v1.1" in log
    assert "hf_testTOKEN" not in log
    hub.__exit__()
    assert "v1.1" in hub.state.tags["me/tiny"]
    assert any(path.endswith("config.json") for path in hub.state.files["me/tiny"])
    # The cycle loaded torch: the daemon started afresh (same PID) to give its memory back.
    assert "daemon restarting" in log and log.count("daemon started (PID") == 2
    assert daemon.proc.poll() is None and state["pid"] == daemon.proc.pid

    stopped = cli("watch", "stop")
    assert stopped.exit_code == 0 and "stopped the daemon" in stopped.output
    assert daemon.proc.wait(timeout=30) == 0
    assert lock_holder(ws, "daemon") is None
    assert "daemon:     not running" in cli("watch", "status").output


def test_failing_cycle_is_logged_once_and_not_retried_at_once(ws, daemons):
    write_config(ws, None, min_new=1)  # the base model does not exist
    shutil.copytree(EXAMPLES / "bugfix-day", ws / "sessions" / "bugfix-day")
    daemon = daemons(ws)

    def failed() -> bool:
        return (daemon.state().get("last_cycle") or {}).get("outcome") == "failed"

    daemon.wait("the failed cycle", failed, timeout=120)
    assert "no-model-needed" in daemon.state()["last_cycle"]["message"]
    time.sleep(4)  # four more checks (and a restart, if the cycle loaded a framework)
    daemon.wait("the idle state", lambda: daemon.state().get("state") == "idle")
    log = (ws / "logs" / "daemon.log").read_text()
    assert log.count("cycle starting") == 1, log
    assert "Traceback" not in log
    assert "the last cycle failed" in daemon.state()["reason"]
    assert daemon.finish() == 0


def test_chunked_append_is_ingested_once_completely(ws, daemons):
    write_config(ws, None, min_new=10_000)
    daemon = daemons(ws)
    daemon.wait("first check", lambda: daemon.state().get("state") == "idle")
    lines = [
        json.dumps({"user": f"question {i}?", "assistant": f"answer {i}.", "metadata": {}})
        for i in range(12)
    ]
    data = ("\n".join(lines) + "\n").encode()
    target = ws / "sessions" / "chunked" / "interactions.jsonl"
    target.parent.mkdir()
    with target.open("wb") as handle:
        for start in range(0, len(data), 37):  # 37-byte chunks: most end mid-line
            handle.write(data[start : start + 37])
            handle.flush()
            time.sleep(0.03)

    def stored() -> bool:
        return query(ws, "SELECT COUNT(*) FROM messages") == [(24,)]

    daemon.wait("all messages stored", stored, timeout=60)
    time.sleep(3)  # later checks read nothing more
    reads = query(ws, "SELECT summary FROM events WHERE stage = 'ingest'")
    passes_that_read = [s for (s,) in reads if "(1 read" in s]
    assert len(passes_that_read) == 1, reads
    assert query(ws, "SELECT COUNT(*) FROM messages") == [(24,)]
    assert daemon.finish() == 0


def test_one_daemon_per_workspace(cli, ws, daemons):
    write_config(ws, None, min_new=10_000)
    first = daemons(ws)
    first.wait("the lock", lambda: lock_holder(ws, "daemon") is not None)
    second = subprocess.run(
        [str(EXE), "--workspace", str(ws), "watch", "--foreground"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 1
    err = second.stderr.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert f"PID {first.proc.pid} (mlx-rsi watch" in err and "daemon lock" in err
    detached = cli.main("watch")
    assert detached[0] == 1 and "a daemon already watches" in detached[2]
    ingest = cli.main("ingest")  # an idle daemon holds only its own lock
    assert ingest[0] == 0, ingest
    assert first.finish() == 0


def test_detached_start_status_stop(cli, ws):
    write_config(ws, None, min_new=10_000)
    code, out, err = cli.main("watch")
    assert code == 0, err
    assert "mlx-rsi watch: started (PID" in out
    holder = lock_holder(ws, "daemon")
    assert holder is not None and f"PID {holder.pid}" in out
    try:
        deadline = time.monotonic() + 60
        while "idle" not in cli("watch", "status").output:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        stopped = cli("watch", "stop")
    assert "stopped the daemon" in stopped.output
    assert lock_holder(ws, "daemon") is None
    assert "no daemon is running" in cli("watch", "stop").output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('  cron: "61 * * * *"\n', "schedule.cron: '61 * * * *' is not a valid cron expression"),
        ("  busy_hours: [9-17]\n", "schedule.busy_hours: '9-17' is not a range like 09:00-18:00"),
    ],
)
def test_bad_schedule_is_one_line(cli, ws, extra, message):
    write_config(ws, None, min_new=1, extra=extra)
    code, _out, err = cli.main("watch", "--once")
    assert code == 2
    assert message in err and err.strip().count("\n") == 0
    assert lock_holder(ws, "daemon") is None


def test_watch_needs_a_workspace(cli):
    code, _out, err = cli.main("watch", "--once")
    assert code == 1 and "no workspace at" in err


@pytest.mark.slow
def test_sigterm_then_sigkill_during_training_then_restart_completes(ws, daemons, tiny_llama_dir):
    write_config(ws, tiny_llama_dir, min_new=1, steps=16)
    shutil.copytree(EXAMPLES, ws / "sessions", dirs_exist_ok=True)

    def checkpoints() -> list[int]:
        found = ws.glob("runs/*/checkpoints/step-*")
        return sorted(int(p.name.split("-")[1]) for p in found)

    first = daemons(ws)
    first.wait("a checkpoint", checkpoints)
    beside = subprocess.run(
        [str(EXE), "--workspace", str(ws), "ingest"], capture_output=True, text=True, timeout=60
    )
    assert beside.returncode == 1  # mid-cycle the daemon holds the workspace lock
    assert (
        f"PID {first.proc.pid} (mlx-rsi watch" in beside.stderr
        and "workspace lock" in beside.stderr
    )
    assert first.finish() == 0  # SIGTERM: checkpoint at the step boundary, exit 0
    assert "stopped at a step boundary" in (ws / "logs" / "daemon.log").read_text()
    assert query(ws, "SELECT status FROM runs") == [("interrupted",)]
    reached = max(checkpoints())

    second = daemons(ws)
    second.wait("a later checkpoint", lambda: max(checkpoints()) > reached)
    second.proc.kill()  # SIGKILL mid-training
    second.proc.wait()
    assert lock_holder(ws, "daemon") is None and lock_holder(ws) is None

    third = daemons(ws)

    def finished() -> bool:
        last = third.state().get("last_cycle") or {}
        return last.get("outcome") in ("promoted", "rejected")

    third.wait("the cycle's end", finished, timeout=600)

    def restarted_and_idle() -> bool:  # torch was loaded: the daemon starts afresh first
        log = (ws / "logs" / "daemon.log").read_text()
        restarted = log.rfind("daemon started (PID") > log.rfind("daemon restarting") >= 0
        return restarted and third.state().get("state") == "idle"

    third.wait("the restart, then the idle state", restarted_and_idle)
    assert third.finish() == 0
    assert query(ws, "SELECT status FROM cycles") == [("done",)]
    assert query(ws, "SELECT COUNT(*) FROM datasets") == [(1,)]
    assert query(ws, "SELECT status FROM runs") == [("done",)]
    current = query(ws, "SELECT COUNT(*) FROM versions WHERE status = 'current'")
    assert current[0][0] <= 1
    (run_dir,) = (ws / "runs").iterdir()
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").open()]
    assert steps[-1] == 16
    log = (ws / "logs" / "daemon.log").read_text()
    assert "resume" in log
    assert f"taking over the daemon lock left by PID {second.proc.pid}" in log


def test_install_and_uninstall_service_files(cli, ws, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    dry = cli("watch", "install", "--dry-run")
    assert dry.exit_code == 0 and "watch --foreground" in dry.output
    assert not (tmp_path / "home").exists()
    installed = cli("watch", "install")
    assert installed.exit_code == 0, installed.output
    assert "wrote " in installed.output and "enable it with:" in installed.output
    assert ("launchctl bootstrap" if sys.platform == "darwin" else "systemctl --user") in (
        installed.output
    )
    written = [p for p in (tmp_path / "home").rglob("*") if p.is_file()]
    assert len(written) == 1
    removed = cli("watch", "uninstall")
    assert removed.exit_code == 0 and f"removed {written[0]}" in removed.output
    assert not written[0].exists()
    assert "no service file" in cli("watch", "uninstall").output
