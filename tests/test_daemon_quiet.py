"""Quiet conditions: recorded `pmset -g batt` output, fake /sys/class/power_supply trees,
busy hours, the CPU idle meter and the probe's verdict; priority lowering."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from mlx_rsi.daemon import priority
from mlx_rsi.daemon.quiet import (
    IdleMeter,
    QuietProbe,
    parse_hours,
    parse_pmset,
    sysfs_ac_power,
)
from mlx_rsi.errors import ConfigError

# Recorded on macOS 14 (MacBook Air M2), plugged in, then on battery; and a Mac mini.
PMSET_AC = """Now drawing from 'AC Power'
 -InternalBattery-0 (id=10813539)\t100%; charged; 0:00 remaining present: true
"""
PMSET_CHARGING = """Now drawing from 'AC Power'
 -InternalBattery-0 (id=10813539)\t63%; charging; 1:12 remaining present: true
"""
PMSET_BATTERY = """Now drawing from 'Battery Power'
 -InternalBattery-0 (id=10813539)\t97%; discharging; 9:41 remaining present: true
"""
PMSET_DESKTOP = "Now drawing from 'AC Power'\n"
PMSET_UPS = "Now drawing from 'UPS Power'\n -CyberPower (id=1)\t80%; discharging\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (PMSET_AC, True),
        (PMSET_CHARGING, True),
        (PMSET_BATTERY, False),
        (PMSET_DESKTOP, True),
        (PMSET_UPS, False),
        ("", None),
        ("pmset: command not found", None),
    ],
)
def test_parse_pmset(text, expected):
    assert parse_pmset(text) is expected


def supply(root: Path, name: str, **files: str) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    for key, value in files.items():
        (folder / key).write_text(value + "\n")


def test_sysfs_laptop_on_ac(tmp_path):
    supply(tmp_path, "AC", type="Mains", online="1")
    supply(tmp_path, "BAT0", type="Battery", status="Charging", capacity="80")
    assert sysfs_ac_power(tmp_path) is True


def test_sysfs_laptop_on_battery(tmp_path):
    supply(tmp_path, "AC", type="Mains", online="0")
    supply(tmp_path, "BAT0", type="Battery", status="Discharging")
    assert sysfs_ac_power(tmp_path) is False


def test_sysfs_usb_c_adapter_counts(tmp_path):
    supply(tmp_path, "ACAD", type="Mains", online="0")
    supply(tmp_path, "ucsi-source-psy-USBC000:001", type="USB", online="1")
    assert sysfs_ac_power(tmp_path) is True


def test_sysfs_device_batteries_ignored(tmp_path):
    """A wireless mouse's discharging battery says nothing about the machine."""
    supply(tmp_path, "hidpp_battery_0", type="Battery", status="Discharging", scope="Device")
    assert sysfs_ac_power(tmp_path) is None


def test_sysfs_desktop_unknown(tmp_path):
    assert sysfs_ac_power(tmp_path) is None  # empty tree: no battery, no adapter
    assert sysfs_ac_power(tmp_path / "missing") is None


def test_sysfs_battery_without_adapter_entry(tmp_path):
    supply(tmp_path, "BAT1", type="Battery", status="Discharging")
    assert sysfs_ac_power(tmp_path) is False
    (tmp_path / "BAT1" / "status").write_text("Full\n")
    assert sysfs_ac_power(tmp_path) is None


def test_busy_hours_parse_and_wrap():
    day, night = parse_hours(("09:00-18:00", "22:30-06:00"))
    assert day.contains(datetime(2026, 1, 1, 9, 0).time())
    assert not day.contains(datetime(2026, 1, 1, 18, 0).time())
    assert night.contains(datetime(2026, 1, 1, 23, 0).time())
    assert night.contains(datetime(2026, 1, 1, 5, 59).time())
    assert not night.contains(datetime(2026, 1, 1, 12, 0).time())
    (whole,) = parse_hours(("00:00-24:00",))
    assert whole.contains(datetime(2026, 1, 1, 23, 59).time())


@pytest.mark.parametrize("bad", ["9-18", "25:00-03:00", "09:60-10:00", "nine to five"])
def test_busy_hours_bad_is_one_line(bad):
    with pytest.raises(ConfigError) as info:
        parse_hours((bad,))
    assert f"'{bad}'" in info.value.one_line() and "\n" not in info.value.one_line()


def probe(**kwargs) -> QuietProbe:
    defaults = dict(
        require_ac_power=True,
        min_cpu_idle=50.0,
        busy_hours=parse_hours(("09:00-17:00",)),
        power=lambda: True,
        idle=lambda: 90.0,
        now=lambda: datetime(2026, 12, 1, 20, 0),
    )
    return QuietProbe(**{**defaults, **kwargs})


def test_probe_quiet_and_each_reason():
    assert probe().read().quiet
    assert probe(power=lambda: None).read().quiet  # unknown counts as AC
    assert probe(power=lambda: False).read().reasons == ("on battery power",)
    assert probe(power=lambda: False, require_ac_power=False).read().quiet
    assert probe(idle=lambda: 20.0).read().reasons == ("CPU 20% idle (< 50%)",)
    busy = probe(now=lambda: datetime(2026, 12, 1, 10, 0)).read()
    assert busy.reasons == ("inside busy hours 09:00-17:00",)
    assert busy.to_dict()["quiet"] is False


def test_idle_meter_excludes_own_cpu():
    """Our own training's CPU time is not "others": it never makes the machine busy."""
    samples = iter([(0.0, 0.0, 0.0), (10.0, 12.0, 10.0), (20.0, 27.0, 10.0)])
    meter = IdleMeter(min_window=0.0, sample=lambda: next(samples), cpus=lambda: 2)
    assert meter.percent() == pytest.approx(90.0)  # 12 s busy, 10 of them ours: 2 of 20
    assert meter.percent() == pytest.approx(25.0)  # 15 s busy, none ours: 15 of 20


def test_idle_meter_reads_this_machine():
    assert 0.0 <= IdleMeter(min_window=0.05).percent() <= 100.0


def test_lower_priority_targets_niceness_10():
    calls: list[int] = []
    current = {"n": 0}

    def nice(inc: int) -> int:
        calls.append(inc)
        current["n"] += inc
        return current["n"]

    background: list[str] = []
    done = priority.lower_priority("background", "darwin", nice, lambda: background.append("bg"))
    assert calls == [0, 10] and background == ["bg"] and done == ["nice 10", "macOS background QoS"]
    calls.clear()
    assert priority.lower_priority("low", "linux", nice, lambda: background.append("x")) == [
        "nice 10"
    ]
    assert calls == [0]  # already at 10 (a service manager set it): nothing added
    assert priority.lower_priority("normal", "darwin", nice) == []
