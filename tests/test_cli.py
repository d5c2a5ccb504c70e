"""The CLI frame from the user's side: version, help, init, status, doctor, error lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlx_rsi import __version__
from mlx_rsi.cli import COMMANDS
from mlx_rsi.config import Config, load_config


def test_version(cli):
    result = cli("--version", workspace=False)
    assert result.exit_code == 0
    assert __version__ in result.output


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(cli, command):
    result = cli(command, "--help", workspace=False)
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_help_and_version_do_not_import_frameworks():
    code = (
        "import sys; from mlx_rsi.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'mlx', 'transformers', 'peft') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_unknown_command_suggests(cli):
    result = cli("statsu", workspace=False)
    assert result.exit_code == 2
    assert "Did you mean 'status'" in result.output


def test_init_writes_config_with_every_default(cli, workspace_dir):
    result = cli("init", "--no-standard-sources")
    assert result.exit_code == 0, result.output
    config_path = workspace_dir / "mlx-rsi.yaml"
    assert load_config(config_path) == Config()
    assert (workspace_dir / "state.db").is_file()
    for folder in ("sessions", "datasets", "runs", "models", "reports", "logs"):
        assert (workspace_dir / folder).is_dir()
    text = config_path.read_text()
    assert "#" in text  # commented


def test_default_template_names_every_key():
    import dataclasses

    from mlx_rsi.commands.init import default_config_text

    data = yaml.safe_load(default_config_text())

    def walk(cls, values, where):
        for f in dataclasses.fields(cls):
            assert f.name in values, f"{where}.{f.name} missing from default.yaml"
            value = values[f.name]
            if dataclasses.is_dataclass(f.type) or (
                isinstance(f.default, object) and dataclasses.is_dataclass(f.default)
            ):
                walk(type(f.default), value, f"{where}.{f.name}")

    walk(Config, data, "config")


def test_init_keeps_existing_config_unless_forced(cli, workspace_dir):
    assert cli("init", "--no-standard-sources").exit_code == 0
    config_path = workspace_dir / "mlx-rsi.yaml"
    config_path.write_text("model:\n  name: mine\n")
    assert cli("init", "--no-standard-sources").exit_code == 0
    assert "mine" in config_path.read_text()
    assert cli("init", "--no-standard-sources", "--force").exit_code == 0
    assert "mine" not in config_path.read_text()


def test_init_base_model_flag(cli, workspace_dir):
    assert cli("init", "--no-standard-sources", "--base-model", "/models/x").exit_code == 0
    assert load_config(workspace_dir / "mlx-rsi.yaml").model.base == "/models/x"


def test_init_without_tty_does_not_prompt(cli, workspace_dir):
    # CliRunner's stdin is not a TTY: no prompt, standard sources stay off.
    result = cli("init")
    assert result.exit_code == 0
    assert "Watch the standard" not in result.output
    cfg = load_config(workspace_dir / "mlx-rsi.yaml")
    assert [w.path for w in cfg.sources.watch] == ["sessions"]


def test_status_counts(cli):
    cli("init", "--no-standard-sources")
    result = cli("status", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["counts"]["sessions"] == 0
    assert report["schema_version"] >= 1
    assert report["current_version"] is None


def test_status_without_workspace_is_one_line(cli):
    code, _out, err = cli.main("status")
    assert code == 1
    assert err.strip().count("\n") == 0
    assert "no workspace" in err and "mlx-rsi init" in err
    assert "Traceback" not in err


def test_doctor_reports_backends(cli):
    cli("init", "--no-standard-sources")
    result = cli("doctor", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["auto_backend"] == "peft"  # Linux CPU: never MLX (FACTS.md)
    assert "CPU" in report["auto_reason"]
    assert report["packages"]["torch"]
    assert set(report["backends"]) == {"mlx", "peft"}
    assert report["workspace_health"].startswith("ok")


def test_doctor_human_output(cli):
    result = cli("doctor")
    assert "auto backend" in result.output
    assert "not created" in result.output


def test_debug_shows_traceback(cli):
    from mlx_rsi.errors import WorkspaceError

    with pytest.raises(WorkspaceError):
        from mlx_rsi.cli import main

        main(["--debug", "--workspace", str(cli.workspace), "status"])


def test_console_script_runs(tmp_path: Path):
    exe = Path(sys.executable).with_name("mlx-rsi")
    out = subprocess.run(
        [str(exe), "--workspace", str(tmp_path / "w"), "status"], capture_output=True, text=True
    )
    assert out.returncode == 1
    assert out.stderr.startswith("error: no workspace")
    assert "Traceback" not in out.stderr
