"""`mlx-rsi watch install`: a launchd agent (macOS) or a systemd user unit (Linux).

Both run ``python -m mlx_rsi --quiet --workspace W watch --foreground`` at login,
restart it after a crash (not after ``mlx-rsi watch stop``, which exits 0), and
give it niceness 10. Choices, and why:

- launchd ``ProcessType: Standard``, not ``Background``: a Background job is
  confined to efficiency cores with throttled I/O — one public CI report
  measured such jobs 6x slower — and ``Adaptive`` behaves as Background for a
  program without XPC activity. ``Interactive`` would compete with the person's
  apps. Standard plus ``Nice: 10`` lets the scheduler favour the person's work
  while training still uses every idle core, and the daemon pauses training
  itself when the machine is busy or on battery.
- systemd ``Nice=10`` for the same reason. ``ConditionACPower=`` is evaluated
  once, when the unit starts: on a long-running service it would mean "started
  on battery at login, never runs that session". So the service does not carry
  it; the daemon checks AC power before every cycle and at every training
  progress event instead. The optional timer-driven one-shot unit written with
  ``--timer`` (``watch --once``, hourly) is where ``ConditionACPower=true`` fits:
  each activation is skipped on battery and the next one tries again.
"""

from __future__ import annotations

import hashlib
import plistlib
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from mlx_rsi import atomic
from mlx_rsi.errors import UsageError

NICE = 10


@dataclass(frozen=True)
class ServiceFiles:
    """What install wrote (or would write) and how to enable it."""

    paths: tuple[Path, ...]
    enable: tuple[str, ...]  # commands to run, one a line
    disable: tuple[str, ...]


def service_id(root: Path) -> str:
    """A stable name per workspace, so two workspaces get two services."""
    return hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8]


def daemon_argv(root: Path, config: Path | None, *, once: bool = False) -> list[str]:
    argv = [sys.executable, "-m", "mlx_rsi", "--quiet", "--workspace", str(root.resolve())]
    if config is not None:
        argv += ["--config", str(config.resolve())]
    return [*argv, "watch", "--once" if once else "--foreground"]


# --------------------------------------------------------------------------- launchd


def launchd_label(root: Path) -> str:
    return f"io.github.mlx-rsi.watch.{service_id(root)}"


def launchd_plist(root: Path, config: Path | None) -> bytes:
    logs = root.resolve() / "logs"
    agent = {
        "Label": launchd_label(root),
        "ProgramArguments": daemon_argv(root, config),
        "WorkingDirectory": str(root.resolve()),
        "RunAtLoad": True,
        # Restart after a crash, not after `mlx-rsi watch stop` (a clean exit 0).
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": 60,
        # Standard, not Background (throttled hard: efficiency cores, slow I/O) nor
        # Interactive (would compete with the person's apps); Nice 10 yields instead.
        "ProcessType": "Standard",
        "Nice": NICE,
        "ExitTimeOut": 60,  # SIGTERM -> checkpoint at the next step -> exit
        "StandardErrorPath": str(logs / "daemon.stderr.log"),
        "StandardOutPath": str(logs / "daemon.stderr.log"),
    }
    return plistlib.dumps(agent, sort_keys=False)


def _launchd(root: Path, config: Path | None, home: Path) -> tuple[ServiceFiles, dict[Path, bytes]]:
    label = launchd_label(root)
    path = home / "Library" / "LaunchAgents" / f"{label}.plist"
    files = ServiceFiles(
        (path,),
        (f"launchctl bootstrap gui/$(id -u) {shlex.quote(str(path))}",),
        (f"launchctl bootout gui/$(id -u)/{label}",),
    )
    return files, {path: launchd_plist(root, config)}


# --------------------------------------------------------------------------- systemd


def systemd_name(root: Path) -> str:
    return f"mlx-rsi-watch-{service_id(root)}"


def _exec(argv: list[str]) -> str:
    return shlex.join(argv).replace("%", "%%")  # % starts a systemd specifier


def systemd_service(root: Path, config: Path | None) -> str:
    return f"""# Written by `mlx-rsi watch install`; remove with `mlx-rsi watch uninstall`.
# No ConditionACPower= here: it is checked once at start, so a login on battery would
# keep the daemon off all session. The daemon checks AC power before each cycle and
# pauses training on battery itself. Nice=10: the person's work comes first.
[Unit]
Description=mlx-rsi watch: improve the model from new sessions ({root.resolve()})
After=default.target

[Service]
Type=simple
ExecStart={_exec(daemon_argv(root, config))}
WorkingDirectory={root.resolve()}
Nice={NICE}
Restart=on-failure
RestartSec=60
KillSignal=SIGTERM
TimeoutStopSec=60

[Install]
WantedBy=default.target
"""


def systemd_timer_units(root: Path, config: Path | None) -> tuple[str, str]:
    """A one-shot `watch --once` service and its hourly timer (skipped on battery)."""
    service = f"""# Written by `mlx-rsi watch install --timer`: one check per activation.
# ConditionACPower=true fits here: an activation on battery is skipped, the next retries.
[Unit]
Description=mlx-rsi watch --once ({root.resolve()})
ConditionACPower=true

[Service]
Type=oneshot
ExecStart={_exec(daemon_argv(root, config, once=True))}
WorkingDirectory={root.resolve()}
Nice={NICE}
"""
    timer = f"""# Written by `mlx-rsi watch install --timer`.
[Unit]
Description=mlx-rsi watch --once, hourly ({root.resolve()})

[Timer]
OnCalendar=hourly
Persistent=true
RandomizedDelaySec=300

[Install]
WantedBy=timers.target
"""
    return service, timer


def _systemd(
    root: Path, config: Path | None, home: Path, timer: bool
) -> tuple[ServiceFiles, dict[Path, bytes]]:
    folder = home / ".config" / "systemd" / "user"
    name = systemd_name(root)
    if timer:
        service, timer_text = systemd_timer_units(root, config)
        contents = {
            folder / f"{name}.service": service.encode(),
            folder / f"{name}.timer": timer_text.encode(),
        }
        unit = f"{name}.timer"
    else:
        contents = {folder / f"{name}.service": systemd_service(root, config).encode()}
        unit = f"{name}.service"
    files = ServiceFiles(
        tuple(contents),
        (
            "systemctl --user daemon-reload",
            f"systemctl --user enable --now {unit}",
            "loginctl enable-linger $USER   # optional: keep it running when logged out",
        ),
        (f"systemctl --user disable --now {unit}",),
    )
    return files, contents


# --------------------------------------------------------------------------- install


def plan(
    root: Path, config: Path | None, *, platform: str, home: Path, timer: bool = False
) -> tuple[ServiceFiles, dict[Path, bytes]]:
    """The files for this platform and their contents (nothing written)."""
    if platform == "darwin":
        if timer:
            raise UsageError("--timer is for systemd; on macOS the launchd agent is the way")
        return _launchd(root, config, home)
    if platform.startswith("linux"):
        return _systemd(root, config, home, timer)
    raise UsageError(
        f"no service manager support for platform '{platform}'",
        hint="run `mlx-rsi watch --foreground` from your own service manager",
    )


def install(
    root: Path, config: Path | None, *, platform: str, home: Path, timer: bool = False
) -> ServiceFiles:
    files, contents = plan(root, config, platform=platform, home=home, timer=timer)
    for path, data in contents.items():
        atomic.write_bytes(path, data)
    return files


def uninstall(root: Path, *, platform: str, home: Path) -> ServiceFiles:
    """Remove every service file this workspace may have; return those removed."""
    removed: list[Path] = []
    disable: list[str] = []
    for timer in (False, True) if platform.startswith("linux") else (False,):
        files, contents = plan(root, None, platform=platform, home=home, timer=timer)
        present = [p for p in contents if p.exists()]
        if present:
            disable.extend(files.disable)
        for path in present:
            path.unlink()
            removed.append(path)
    return ServiceFiles(tuple(removed), (), tuple(dict.fromkeys(disable)))
