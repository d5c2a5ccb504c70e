"""Cutting a streamed answer at its stop strings without ever sending part of one."""

from __future__ import annotations

from collections.abc import Sequence


class StopCutter:
    """Feed streamed text; get back what is safe to send, until a stop string appears.

    Text that could be the start of a stop string is held back until the next
    delta shows whether it is one; on a stop, everything before it is released
    and ``stopped`` becomes true.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.stopped = False
        self._pending = ""
        self._hold = max((len(s) for s in self.stops), default=1) - 1

    def feed(self, delta: str) -> str:
        if self.stopped:
            return ""
        self._pending += delta
        cut = min(
            (i for i in (self._pending.find(s) for s in self.stops) if i >= 0),
            default=-1,
        )
        if cut >= 0:
            self.stopped = True
            out, self._pending = self._pending[:cut], ""
            return out
        safe = len(self._pending) - self._hold
        if safe <= 0:
            return ""
        out, self._pending = self._pending[:safe], self._pending[safe:]
        return out

    def flush(self) -> str:
        out, self._pending = ("" if self.stopped else self._pending), ""
        return out
