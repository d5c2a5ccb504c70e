"""Debounced batches: a scripted event source with a fake clock, then real watchdog."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from mlx_rsi.daemon.events import Batch, QueueSource, WatchdogSource, WatchRoot, watch


class ScriptedSource:
    """Events at fixed fake times; ``get`` advances the fake clock instead of sleeping."""

    def __init__(self, script: list[tuple[float, Path]], stop_at: float, stop: threading.Event):
        self.script = sorted(script, key=lambda item: item[0])
        self.now = 0.0
        self.stop_at = stop_at
        self.stop = stop
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def get(self, timeout: float) -> list[Path]:
        self.waits.append(timeout)
        until = self.now + timeout
        if self.script and self.script[0][0] <= until:
            at = self.script[0][0]
            self.now = max(self.now, at)
            batch = [p for t, p in self.script if t == at]
            self.script = [(t, p) for t, p in self.script if t != at]
            return batch
        self.now = until
        if self.now >= self.stop_at:
            self.stop.set()
        return []

    def wake(self) -> None:
        pass


def run(script, *, debounce=2.0, tick=100.0, rescan=1000.0, max_delay=None, stop_at=50.0):
    stop = threading.Event()
    source = ScriptedSource(script, stop_at, stop)
    batches = [
        (source.now, b)
        for b in watch(
            source,
            stop,
            debounce=debounce,
            tick=tick,
            rescan=rescan,
            max_delay=max_delay,
            clock=source.clock,
        )
    ]
    return batches, source


def test_burst_is_one_batch(tmp_path):
    paths = [tmp_path / f"s{i}.jsonl" for i in range(5)]
    script = [(0.5 * i, p) for i, p in enumerate(paths)] + [(2.5, paths[0])]
    batches, source = run(script)
    assert [(t, b.paths) for t, b in batches] == [(4.5, frozenset(paths))]
    assert all(w > 0 for w in source.waits[1:-1])  # never a zero-timeout spin while waiting


def test_file_written_for_long_waits_for_quiet(tmp_path):
    """Chunks every second for 10 s (debounce 2 s): released once, 2 s after the last."""
    path = tmp_path / "growing.jsonl"
    batches, _ = run([(float(t), path) for t in range(11)], max_delay=1000.0)
    assert [(t, b.paths) for t, b in batches] == [(12.0, frozenset({path}))]


def test_endless_activity_releases_quiet_paths_after_max_delay(tmp_path):
    busy, done = tmp_path / "busy.jsonl", tmp_path / "done.jsonl"
    script = [(0.0, done)] + [(t * 1.0, busy) for t in range(40)]
    batches, source = run(script, max_delay=10.0, stop_at=20.0)
    assert batches and batches[0][1].paths == frozenset({done})
    assert 10.0 <= batches[0][0] <= 12.0
    assert all(w > 0 for w in source.waits[1:-1])


def test_ticks_and_rescans_when_nothing_happens():
    batches, _ = run([], tick=10.0, rescan=25.0, stop_at=52.0)
    assert [t for t, _ in batches] == [10.0, 20.0, 25.0, 35.0, 45.0, 50.0]
    assert [b.rescan for _, b in batches] == [False, False, True, False, False, True]
    assert all(not b.paths for _, b in batches)


def test_stop_ends_a_wait_promptly():
    stop, source = threading.Event(), QueueSource()
    started = time.monotonic()
    threading.Timer(0.2, lambda: (stop.set(), source.wake())).start()
    assert list(watch(source, stop, debounce=1.0, tick=600.0, rescan=600.0)) == []
    assert time.monotonic() - started < 5.0


def test_real_watchdog_chunked_write_is_one_batch(tmp_path):
    """A file appended in small chunks (and a non-matching file) with real watchdog."""
    folder = tmp_path / "sessions" / "nested"
    folder.mkdir(parents=True)
    source = WatchdogSource([WatchRoot(tmp_path / "sessions", lambda n: n.endswith(".jsonl"))])
    source.start()
    stop = threading.Event()
    batches: list[Batch] = []

    def consume() -> None:
        for batch in watch(source, stop, debounce=0.8, tick=600.0, rescan=600.0):
            batches.append(batch)

    thread = threading.Thread(target=consume)
    thread.start()
    try:
        target = folder / "log.jsonl"
        with target.open("w") as handle:
            for i in range(10):
                handle.write(f'{{"role": "user", "content": "chunk {i}"}}\n')
                handle.flush()
                time.sleep(0.1)
        (folder / "ignored.txt").write_text("x")
        deadline = time.monotonic() + 15
        while not batches and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)  # nothing else may follow
    finally:
        stop.set()
        source.stop()
        source.stop()  # idempotent
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert len(batches) == 1
    assert batches[0].paths == frozenset({target})


def test_watchdog_picks_up_a_folder_created_later(tmp_path):
    """A source folder missing at start is watched once a rescan's refresh finds it."""
    later = tmp_path / "later"
    source = WatchdogSource([WatchRoot(later, lambda n: n.endswith(".jsonl"))])
    source.start()
    try:
        assert source.refresh() == [later]
        later.mkdir()
        assert source.refresh() == []
        (later / "new.jsonl").write_text("{}\n")
        deadline = time.monotonic() + 10
        seen: list[Path] = []
        while later / "new.jsonl" not in seen and time.monotonic() < deadline:
            seen += source.get(0.5)
        assert later / "new.jsonl" in seen
    finally:
        source.stop()
