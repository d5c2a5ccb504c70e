"""Footprint of `mlx-rsi watch`: CPU and RSS of an idle daemon, and trigger latency.

Measured in one run, on a temporary workspace whose sessions folder holds
``--files`` (1,000) collector session files:

- the anchor: a bare ``python -c 'time.sleep(...)'`` process over the same window;
- an idle daemon (defaults: debounce 30 s, checks every 60 s; no cycle can start)
  watching those files for ``--seconds`` (60): CPU % of one core and RSS (peak of
  1 s samples), plus whether any ML framework got imported (it must not);
- latency: a daemon with ``debounce_seconds: 2`` one example short of
  ``min_new_examples``; a qualifying session file (an answer marked successful) is
  written and the time to
  the daemon's "cycle" state is measured, ``--latency-runs`` times. The cycle then
  stops at once (the base model is missing on purpose): only the start matters.
  The debounce is the designed floor of that latency, reported as its anchor.

Run: ``python scripts/bench_watch.py`` (``--seconds 10`` for a quick look).
Targets: idle < 1 % CPU and < 150 MB RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

EXE = Path(sys.executable).with_name("mlx-rsi")
HEAVY = ("torch", "mlx", "transformers", "peft")
# Unrelated requests: near-duplicate detection would merge variations of one sentence.
QUALIFYING = [
    ("How do I rotate the staging deploy key?", "Add the new key, then revoke the old one."),
    ("Why does pytest hang on CI?", "A fixture waits on a socket; give it a timeout."),
    ("Convert this YAML loader to safe_load", "Replace yaml.load(f) with yaml.safe_load(f)."),
    ("Write a README section about install", "## Install\n\npip install the package."),
    ("What does SIGTERM do to the daemon?", "It checkpoints at the next step and exits."),
]


def make_workspace(root: Path, files: int) -> Path:
    ws = root / "ws"
    subprocess.run(
        [str(EXE), "-w", str(ws), "init", "--no-standard-sources"], check=True, capture_output=True
    )
    for i in range(files):
        folder = ws / "sessions" / f"s{i // 50:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        line = {"user": f"note {i}", "assistant": f"ok {i}", "metadata": {"success": False}}
        (folder / f"session-{i:04d}.jsonl").write_text(json.dumps(line) + "\n")
    return ws


def write_config(ws: Path, schedule: str) -> None:
    (ws / "mlx-rsi.yaml").write_text(
        f"model:\n  base: {ws / 'no-model-here'}\nschedule:\n{schedule}"
    )


def start(ws: Path, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    return subprocess.Popen(
        [str(EXE), "-w", str(ws), "watch", "--foreground"], stdout=out, stderr=out
    )


def state(ws: Path) -> dict[str, object]:
    try:
        data = json.loads((ws / "daemon" / "state.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def wait_for(check, timeout: float = 300.0, step: float = 0.02) -> float:
    began = time.perf_counter()
    while not check():
        if time.perf_counter() - began > timeout:
            raise SystemExit("timed out")
        time.sleep(step)
    return time.perf_counter() - began


def footprint(pid: int, seconds: float) -> tuple[float, float]:
    """(CPU % of one core, peak RSS MB) of ``pid`` over ``seconds``."""
    proc = psutil.Process(pid)
    before = proc.cpu_times()
    peak = 0.0
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        peak = max(peak, proc.memory_info().rss / 1e6)
        time.sleep(1.0)
    after = proc.cpu_times()
    used = (after.user - before.user) + (after.system - before.system)
    return 100.0 * used / (time.perf_counter() - began), peak


def heavy_modules(pid: int) -> list[str]:
    """ML frameworks whose shared libraries are mapped into ``pid``."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return []
    return [name for name in HEAVY if f"/{name}/" in maps]


def bench_idle(ws: Path, seconds: float, logs: Path) -> dict[str, object]:
    write_config(ws, "  min_new_examples: 1000000\n")
    daemon = start(ws, logs / "idle.log")
    try:
        startup = wait_for(lambda: state(ws).get("state") == "idle")
        cpu, rss = footprint(daemon.pid, seconds)
        return {"startup": startup, "cpu": cpu, "rss": rss, "heavy": heavy_modules(daemon.pid)}
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)


def bench_anchor(seconds: float) -> tuple[float, float]:
    sleeper = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds + 5})"])
    try:
        time.sleep(0.5)
        return footprint(sleeper.pid, seconds)
    finally:
        sleeper.kill()
        sleeper.wait()


def bench_latency(ws: Path, runs: int, logs: Path) -> list[float]:
    times = []
    for run in range(runs):
        # Run k needs k qualifying examples: the k-1 of earlier runs stay below it. Each
        # run's cycle fails at once (no model), and a failed cycle is not retried before
        # the next rescan: forget it, so every run measures a fresh trigger.
        write_config(
            ws,
            f"  min_new_examples: {run + 1}\n  debounce_seconds: 2\n  rescan_minutes: 600\n"
            "  min_cpu_idle: 0\n  require_ac_power: false\n",  # the trigger path only
        )
        (ws / "daemon" / "state.json").unlink(missing_ok=True)
        daemon = start(ws, logs / f"latency-{run}.log")
        try:
            wait_for(lambda: state(ws).get("state") == "idle")
            target = ws / "sessions" / "qualifying" / f"run-{run}.jsonl"
            target.parent.mkdir(exist_ok=True)
            user, assistant = QUALIFYING[run % len(QUALIFYING)]
            line = {"user": user, "assistant": assistant, "metadata": {"success": True}}
            began = time.perf_counter()
            target.write_text(json.dumps(line) + "\n")
            wait_for(lambda: state(ws).get("state") in ("starting cycle", "cycle"))
            times.append(time.perf_counter() - began)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=120)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--latency-runs", type=int, default=3, choices=range(1, 6))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-watch-") as tmp:
        root = Path(tmp)
        ws = make_workspace(root, args.files)
        anchor_cpu, anchor_rss = bench_anchor(args.seconds)
        idle = bench_idle(ws, args.seconds, root)
        latencies = bench_latency(ws, args.latency_runs, root)
    median = statistics.median(latencies)
    print(
        f"{args.files} watched files, {args.seconds:.0f} s idle window, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}"
    )
    print("| measurement | value | anchor (same run) | ratio |")
    print("|---|---|---|---|")
    print(
        f"| idle CPU (% of one core) | {idle['cpu']:.2f} % | bare python sleeping: "
        f"{anchor_cpu:.2f} % | {idle['cpu'] - anchor_cpu:+.2f} points |"
    )
    print(
        f"| idle RSS (peak) | {idle['rss']:.0f} MB | bare python: {anchor_rss:.0f} MB | "
        f"{idle['rss'] / anchor_rss:.1f}x |"
    )
    print(f"| startup to idle (first ingest of {args.files} files) | {idle['startup']:.1f} s | | |")
    print(
        f"| new qualifying file -> cycle start (median of {len(latencies)}) | {median:.2f} s "
        f"| debounce 2.00 s | {median / 2.0:.2f}x |"
    )
    print(f"ML frameworks mapped in the idle daemon: {idle['heavy'] or 'none'}")
    print(f"latencies: {', '.join(f'{t:.2f}' for t in latencies)} s; targets: < 1 % CPU, < 150 MB")


if __name__ == "__main__":
    main()
