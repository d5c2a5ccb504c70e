"""Backend registry and `auto`: availability reasons, forcing one that cannot run."""

from __future__ import annotations

import importlib.util

import pytest

from backends import base
from mlx_rsi.errors import BackendUnavailableError, UsageError


@pytest.fixture
def without(monkeypatch):
    """Make the named modules look uninstalled (as on a machine without them)."""

    def hide(*names: str) -> None:
        real = importlib.util.find_spec

        def find_spec(name, *args, **kwargs):
            return None if name in names else real(name, *args, **kwargs)

        monkeypatch.setattr(importlib.util, "find_spec", find_spec)

    return hide


def test_auto_on_a_linux_cpu_is_peft():
    name, reason = base.auto_choice()
    assert name == "peft" and "CPU" in reason


def test_auto_falls_back_to_mlx_without_torch(without):
    without("torch", "transformers", "peft")
    name, reason = base.auto_choice()
    assert name == "mlx" and "PEFT unavailable" in reason


def test_forcing_an_unavailable_backend_says_why(without):
    without("mlx_lm")
    with pytest.raises(BackendUnavailableError) as exc:
        base.get_backend("mlx")
    assert "backend 'mlx' is not available here: mlx_lm not installed" in exc.value.one_line()
    assert "pip install 'mlx-rsi[mlx]'" in exc.value.one_line()


def test_unknown_backend_suggests():
    with pytest.raises(UsageError, match="did you mean 'peft'"):
        base.get_backend("pef")


def test_cli_forcing_unavailable_backend_is_exit_2_before_any_work(cli, without):
    assert cli("init", "--no-standard-sources").exit_code == 0
    without("mlx_lm")
    code, _out, err = cli.main("train", "--backend", "mlx")
    assert code == 2
    assert "backend 'mlx' is not available here" in err and "Traceback" not in err
    import sqlite3

    with sqlite3.connect(cli.workspace / "state.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 0


def test_total_steps_from_epochs_or_max_steps(tmp_path):
    spec = base.TrainSpec(model_dir=tmp_path, batch_size=2, grad_accum=4, epochs=2.0)
    assert spec.total_steps(17) == 6  # ceil(17 / 8) = 3 steps per epoch
    assert base.TrainSpec(model_dir=tmp_path, max_steps=5).total_steps(1000) == 5
