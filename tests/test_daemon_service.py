"""Service files: the launchd plist parses with plistlib, the systemd units with configparser."""

from __future__ import annotations

import configparser
import plistlib
import sys
from pathlib import Path

import pytest

from mlx_rsi.daemon import service
from mlx_rsi.errors import UsageError


def test_launchd_plist(tmp_path):
    root = tmp_path / "my ws"
    files = service.install(root, None, platform="darwin", home=tmp_path / "home")
    (path,) = files.paths
    assert path.parent == tmp_path / "home" / "Library" / "LaunchAgents"
    agent = plistlib.loads(path.read_bytes())
    assert agent["Label"] == path.stem
    assert agent["ProgramArguments"][:3] == [sys.executable, "-m", "mlx_rsi"]
    assert agent["ProgramArguments"][-2:] == ["watch", "--foreground"]
    assert str(root.resolve()) in agent["ProgramArguments"]
    assert agent["ProcessType"] == "Standard" and agent["Nice"] == 10
    assert agent["KeepAlive"] == {"SuccessfulExit": False}
    assert "launchctl bootstrap" in files.enable[0]
    removed = service.uninstall(root, platform="darwin", home=tmp_path / "home")
    assert removed.paths == (path,) and not path.exists()


def read_unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(path.read_text())
    return parser


def test_systemd_service_unit(tmp_path):
    root, config = tmp_path / "ws%1", tmp_path / "c.yaml"
    files = service.install(root, config, platform="linux", home=tmp_path)
    (path,) = files.paths
    assert path.suffix == ".service" and path.parent == tmp_path / ".config/systemd/user"
    unit = read_unit(path)
    exec_start = unit["Service"]["ExecStart"]
    assert exec_start.endswith("watch --foreground") and "--config" in exec_start
    assert "ws%%1" in exec_start  # % escaped for systemd
    assert unit["Service"]["Nice"] == "10" and unit["Service"]["Restart"] == "on-failure"
    assert "ConditionACPower" not in unit["Unit"]  # checked once at start: see the comment
    assert unit["Install"]["WantedBy"] == "default.target"
    assert any("systemctl --user enable --now" in line for line in files.enable)


def test_systemd_timer_units_carry_condition_ac_power(tmp_path):
    files = service.install(tmp_path / "ws", None, platform="linux", home=tmp_path, timer=True)
    service_path, timer_path = files.paths
    unit = read_unit(service_path)
    assert unit["Unit"]["ConditionACPower"] == "true"
    assert unit["Service"]["Type"] == "oneshot"
    assert unit["Service"]["ExecStart"].endswith("watch --once")
    assert read_unit(timer_path)["Timer"]["OnCalendar"] == "hourly"
    removed = service.uninstall(tmp_path / "ws", platform="linux", home=tmp_path)
    assert set(removed.paths) == {service_path, timer_path}


def test_two_workspaces_two_services(tmp_path):
    assert service.service_id(tmp_path / "a") != service.service_id(tmp_path / "b")


def test_unsupported_platform_is_one_line(tmp_path):
    with pytest.raises(UsageError, match="no service manager support for platform 'win32'"):
        service.plan(tmp_path, None, platform="win32", home=tmp_path)
