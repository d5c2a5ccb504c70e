"""Is the machine quiet enough to train? AC power, idle CPU, hours of the day.

The daemon trains only when the person is not relying on the machine: plugged in
(where that can be told), other processes leaving most of the CPU idle, and
outside the configured busy hours. Each probe reads the platform's own source:

- macOS: ``pmset -g batt`` ("Now drawing from 'AC Power'" or "'Battery Power'");
- Linux: ``/sys/class/power_supply/*/{type,online,status}`` like ``systemd-ac-power``
  (a Mains/USB adapter online means AC; adapters present but none online means
  battery; no adapter at all — a desktop — means AC unless a battery discharges);
- elsewhere: ``psutil.sensors_battery().power_plugged``.

An unknown power state counts as AC so a desktop without a battery still trains.
CPU idleness excludes this process and its children, so the daemon's own training
never makes the machine look busy (and so never pauses itself).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from datetime import time as clock
from pathlib import Path

from mlx_rsi.errors import ConfigError

SYSFS_POWER = Path("/sys/class/power_supply")
_ADAPTER_TYPES = {"Mains", "USB", "USB_C", "USB_PD", "USB_PD_DRP", "BrickID", "Wireless"}
_HOURS = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")

# --------------------------------------------------------------------------- power


def parse_pmset(text: str) -> bool | None:
    """AC power from ``pmset -g batt`` output; None when it names neither source."""
    match = re.search(r"Now drawing from '([^']+)'", text)
    if match is None:
        return None
    source = match.group(1)
    if source == "AC Power":
        return True
    if source in ("Battery Power", "UPS Power"):
        return False
    return None


def sysfs_ac_power(root: Path = SYSFS_POWER) -> bool | None:
    """AC power from a ``/sys/class/power_supply`` tree (``systemd-ac-power``'s rules)."""
    if not root.is_dir():
        return None
    adapters: list[bool] = []
    discharging = False
    for supply in sorted(root.iterdir()):
        kind = _read(supply / "type")
        if _read(supply / "scope") == "Device":
            continue  # a mouse or a phone's battery, not the machine's
        if kind in _ADAPTER_TYPES:
            adapters.append(_read(supply / "online") == "1")
        elif kind == "Battery" and _read(supply / "status") == "Discharging":
            discharging = True
    if adapters:
        return any(adapters)
    if discharging:
        return False
    return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None


def psutil_ac_power() -> bool | None:
    import psutil

    try:
        battery = psutil.sensors_battery()
    except (AttributeError, NotImplementedError, OSError):
        return None
    if battery is None:
        return None
    return None if battery.power_plugged is None else bool(battery.power_plugged)


def pmset_ac_power() -> bool | None:
    try:
        done = subprocess.run(
            ["pmset", "-g", "batt"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_pmset(done.stdout) if done.returncode == 0 else None


def ac_power(platform: str = sys.platform) -> bool | None:
    """True on AC, False on battery, None when this machine cannot tell."""
    if platform == "darwin":
        found = pmset_ac_power()
    elif platform.startswith("linux"):
        found = sysfs_ac_power()
    else:
        found = None
    return found if found is not None else psutil_ac_power()


# --------------------------------------------------------------------------- CPU


Sample = tuple[float, float, float]  # (monotonic time, all CPUs' busy s, this process's s)


def cpu_sample() -> Sample:
    import psutil

    own = psutil.Process().cpu_times()
    mine = own.user + own.system + own.children_user + own.children_system
    total = psutil.cpu_times()
    busy = sum(total) - total.idle - getattr(total, "iowait", 0.0)
    return time.monotonic(), busy, mine


def cpu_count() -> int:
    import psutil

    return psutil.cpu_count() or 1


class IdleMeter:
    """Percent of CPU left idle by *other* processes since the previous reading."""

    def __init__(
        self,
        min_window: float = 1.0,
        sample: Callable[[], Sample] = cpu_sample,
        cpus: Callable[[], int] = cpu_count,
    ) -> None:
        self.min_window = min_window
        self._sample = sample
        self._cpus = cpus
        self._last = sample()

    def percent(self) -> float:
        """Idle % over the window since the last call (waits to make it ``min_window``)."""
        elapsed = time.monotonic() - self._last[0]
        if elapsed < self.min_window:
            time.sleep(self.min_window - elapsed)
        now = self._sample()
        wall = (now[0] - self._last[0]) * self._cpus()
        others = max(0.0, (now[1] - self._last[1]) - (now[2] - self._last[2]))
        self._last = now
        return max(0.0, min(100.0, 100.0 * (1.0 - others / wall))) if wall > 0 else 100.0


# --------------------------------------------------------------------------- hours


@dataclass(frozen=True)
class HourRange:
    start: clock
    end: clock
    text: str

    def contains(self, moment: clock) -> bool:
        if self.start < self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end  # wraps midnight (equal: all day)


def parse_hours(ranges: tuple[str, ...]) -> list[HourRange]:
    """``"09:00-18:00"`` strings → ranges; a bad one is a one-line ConfigError."""
    parsed = []
    for text in ranges:
        match = _HOURS.match(text)
        numbers = [int(g) for g in match.groups()] if match else []
        if not numbers or numbers[0] > 23 or numbers[2] > 24 or max(numbers[1], numbers[3]) > 59:
            raise ConfigError(
                f"schedule.busy_hours: '{text}' is not a range like 09:00-18:00",
                hint="use 24-hour HH:MM-HH:MM; a range may wrap past midnight (22:00-06:00)",
            )
        end = clock(0, 0) if numbers[2] == 24 else clock(numbers[2], numbers[3])
        parsed.append(HourRange(clock(numbers[0], numbers[1]), end, text.strip()))
    return parsed


# --------------------------------------------------------------------------- verdict


@dataclass(frozen=True)
class QuietReport:
    """One reading of the quiet conditions and what keeps the machine from being quiet."""

    ac_power: bool | None
    cpu_idle: float | None
    busy_hours: str | None  # the busy range we are in, if any
    reasons: tuple[str, ...]

    @property
    def quiet(self) -> bool:
        return not self.reasons

    def to_dict(self) -> dict[str, object]:
        return {
            "ac_power": self.ac_power,
            "cpu_idle": None if self.cpu_idle is None else round(self.cpu_idle, 1),
            "busy_hours": self.busy_hours,
            "quiet": self.quiet,
            "reasons": list(self.reasons),
        }


@dataclass
class QuietProbe:
    """Reads the conditions; the probes are injectable for tests."""

    require_ac_power: bool
    min_cpu_idle: float
    busy_hours: list[HourRange]
    power: Callable[[], bool | None] = ac_power
    idle: Callable[[], float] | None = None
    now: Callable[[], datetime] = datetime.now

    def read(self) -> QuietReport:
        reasons: list[str] = []
        power = self.power() if self.require_ac_power else None
        if power is False:
            reasons.append("on battery power")
        idle = self.idle() if self.idle is not None and self.min_cpu_idle > 0 else None
        if idle is not None and idle < self.min_cpu_idle:
            reasons.append(f"CPU {idle:.0f}% idle (< {self.min_cpu_idle:.0f}%)")
        moment = self.now().time()
        busy = next((r.text for r in self.busy_hours if r.contains(moment)), None)
        if busy is not None:
            reasons.append(f"inside busy hours {busy}")
        return QuietReport(power, idle, busy, tuple(reasons))
