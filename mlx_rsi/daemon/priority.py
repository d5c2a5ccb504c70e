"""Training yields to the user: the daemon lowers its own CPU priority once.

``low`` (the default) is niceness 10 (absolute, so a service manager's own
``Nice`` of 10 is not added to): the scheduler runs the person's work first
but training still gets every idle cycle. ``background`` adds macOS's background
policy (``setpriority(PRIO_DARWIN_PROCESS, 0, PRIO_DARWIN_BG)``, what
``taskpolicy -b`` does): efficiency cores only and throttled disk I/O, which
launchd's ``ProcessType: Background`` also applies and which one public report
measured as 6x slower jobs — so it is opt-in. ``normal`` changes nothing.
A niceness cannot be lowered back by an unprivileged process, so this happens
once, at daemon start; the daemon does no other heavy work.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

log = logging.getLogger(__name__)

NICE_LOW = 10
PRIO_DARWIN_PROCESS = 4  # <sys/resource.h>
PRIO_DARWIN_BG = 0x1000


def darwin_background() -> None:
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.setpriority(PRIO_DARWIN_PROCESS, 0, PRIO_DARWIN_BG) != 0:
        raise OSError(ctypes.get_errno(), "setpriority(PRIO_DARWIN_BG) failed")


def lower_priority(
    priority: str,
    platform: str = sys.platform,
    nice: Callable[[int], int] = os.nice,
    background: Callable[[], None] = darwin_background,
) -> list[str]:
    """Apply ``schedule.priority``; return what was done, for the log."""
    done: list[str] = []
    if priority == "normal":
        return done
    try:
        current = nice(0)  # already 10 when launchd's Nice or systemd's Nice= set it
        if current < NICE_LOW:
            nice(NICE_LOW - current)
        done.append(f"nice {max(current, NICE_LOW)}")
    except OSError as e:
        log.warning("could not lower the CPU priority: %s", e)
    if priority == "background" and platform == "darwin":
        try:
            background()
            done.append("macOS background QoS")
        except OSError as e:
            log.warning("could not set the macOS background policy: %s", e)
    return done
