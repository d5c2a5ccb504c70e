"""File events → debounced batches: the daemon's loop is a ``for`` over :func:`watch`.

Shaped like watchfiles' ``watch()``: a generator that yields one :class:`Batch`
per settled burst of changes and returns when a stop event is set. A batch is
yielded once no watched file has changed for ``debounce`` seconds, so a burst of
writes is one batch and a file still being written is not read mid-write; under
endless activity a path that has itself been quiet for ``debounce`` is released
after ``max_delay``. Between bursts the generator also yields empty batches every
``tick`` seconds (the daemon checks its triggers then) and flags a full rescan
every ``rescan`` seconds (a safety net for events the watcher missed).

Events come from an :class:`EventSource`: :class:`WatchdogSource` (real folders,
recursive watchdog observers) or, in tests, any object with ``get``/``wake``.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

_WAKE = Path("\0wake")  # a sentinel put on the queue to end a wait early


@dataclass(frozen=True)
class Batch:
    """Paths whose changes settled, and whether this is a rescan / a timer tick."""

    paths: frozenset[Path]
    rescan: bool = False

    @property
    def empty(self) -> bool:
        return not self.paths and not self.rescan


class EventSource(Protocol):
    def get(self, timeout: float) -> list[Path]:
        """Paths touched since the last call, waiting up to ``timeout`` s for the first."""

    def wake(self) -> None:
        """Make a pending ``get`` return now (called after the stop event is set)."""


class QueueSource:
    """An event source fed by ``put``: the base of the watchdog source, and of tests."""

    def __init__(self) -> None:
        self.queue: queue.Queue[Path] = queue.Queue()

    def put(self, path: Path) -> None:
        self.queue.put(path)

    def wake(self) -> None:
        self.queue.put(_WAKE)

    def get(self, timeout: float) -> list[Path]:
        try:
            first = self.queue.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return []
        items = [first]
        while True:
            try:
                items.append(self.queue.get_nowait())
            except queue.Empty:
                return [p for p in items if p != _WAKE]


@dataclass
class _Pending:
    first: float
    last: dict[Path, float]
    last_any: float


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def watch(
    source: EventSource,
    stop: threading.Event,
    *,
    debounce: float,
    tick: float,
    rescan: float,
    max_delay: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Batch]:
    """Yield debounced batches until ``stop`` is set (see the module docstring)."""
    max_delay = max_delay if max_delay is not None else max(10 * debounce, debounce + 60)
    pending: _Pending | None = None
    signatures: dict[Path, tuple[int, int] | None] = {}
    next_tick, next_rescan = clock() + tick, clock() + rescan
    while not stop.is_set():
        now = clock()
        deadline = min(next_tick, next_rescan)
        if pending is not None:
            deadline = min(deadline, _next_release(pending, debounce, max_delay))
        for path in source.get(max(0.0, deadline - now)):
            now = clock()
            signatures[path] = _signature(path)
            if pending is None:
                pending = _Pending(now, {}, now)
            pending.last[path], pending.last_any = now, now
        if stop.is_set():
            return
        now = clock()
        ready = _settled(pending, signatures, now, debounce, max_delay)
        is_rescan = now >= next_rescan
        if ready or is_rescan or now >= next_tick:
            if ready and pending is not None:
                for path in ready:
                    pending.last.pop(path, None)
                    signatures.pop(path, None)
                pending = _Pending(now, pending.last, pending.last_any) if pending.last else None
            if is_rescan:
                next_rescan = now + rescan
            next_tick = now + tick
            yield Batch(frozenset(ready), rescan=is_rescan)


def _next_release(pending: _Pending, debounce: float, max_delay: float) -> float:
    """When a pending path may be released next (never in the past: no busy loop)."""
    gap = pending.last_any + debounce
    overdue = pending.first + max_delay
    if pending.last and overdue <= gap:
        earliest_quiet = min(pending.last.values()) + debounce
        return min(gap, max(overdue, earliest_quiet))
    return gap


def _settled(
    pending: _Pending | None,
    signatures: dict[Path, tuple[int, int] | None],
    now: float,
    debounce: float,
    max_delay: float,
) -> list[Path]:
    """Paths to release now: all after a quiet gap, or the quiet ones after ``max_delay``."""
    if pending is None:
        return []
    if now - pending.last_any >= debounce:
        candidates = list(pending.last)
    elif now - pending.first >= max_delay:
        candidates = [p for p, t in pending.last.items() if now - t >= debounce]
    else:
        return []
    ready = []
    for path in candidates:
        if _signature(path) != signatures.get(path):  # written without an event: wait again
            signatures[path] = _signature(path)
            pending.last[path] = pending.last_any = now
            continue
        ready.append(path)
    return ready


# --------------------------------------------------------------------------- watchdog


@dataclass(frozen=True)
class WatchRoot:
    """A folder to observe and the filter deciding which of its files matter."""

    path: Path
    wanted: Callable[[str], bool]


class WatchdogSource(QueueSource):
    """Recursive watchdog observers on each existing root; events filtered by name."""

    def __init__(self, roots: list[WatchRoot]) -> None:
        super().__init__()
        from watchdog.observers import Observer

        self.roots = roots
        self.observer: Any = Observer()
        self._scheduled: set[Path] = set()
        self._lock = threading.Lock()
        self._stopped = False

    def start(self) -> None:
        self.refresh()
        self.observer.start()

    def refresh(self) -> list[Path]:
        """Schedule roots that exist now (a folder created after start); return missing ones."""
        missing = []
        for root in self.roots:
            if root.path in self._scheduled:
                continue
            if not root.path.is_dir():
                missing.append(root.path)
                continue
            self.observer.schedule(_Handler(self, root), str(root.path), recursive=True)
            self._scheduled.add(root.path)
            log.info("watching %s", root.path)
        return missing

    def stop(self) -> None:
        """Idempotent: stop the observer threads and join them (watchdog's discipline)."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self.wake()
        self.observer.stop()
        if self.observer.is_alive():
            self.observer.join(timeout=10)


class _Handler:
    """watchdog's dispatch protocol without subclassing at import time (lazy import)."""

    def __init__(self, source: WatchdogSource, root: WatchRoot) -> None:
        self.source = source
        self.root = root

    def dispatch(self, event: Any) -> None:
        if event.event_type in ("opened", "closed_no_write", "deleted"):
            return
        if event.is_directory and event.event_type == "modified":
            return  # a file inside changed: that file has its own event
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if not raw:
                continue
            path = Path(os.fsdecode(raw))
            if event.is_directory or self.root.wanted(path.name):
                self.source.put(path)
