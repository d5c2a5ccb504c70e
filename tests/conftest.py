"""Shared test fixtures: offline guard, CLI runner, workspaces, tiny models."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from fixtures_models import *  # noqa: F403  (session-scoped tiny models)

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: object) -> object:
    """No network in tests: only loopback and local (unix) sockets may connect."""
    if isinstance(address, tuple) and address:
        host = str(address[0])
        if host not in ("127.0.0.1", "::1", "localhost", "0.0.0.0"):
            raise OSError(f"network access blocked in tests: {address}")
    return _real_connect(self, address)  # type: ignore[arg-type]


socket.socket.connect = _loopback_only  # type: ignore[method-assign]


class Cli:
    """Runs `mlx-rsi` in-process through the same `main` the console script uses."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.runner = CliRunner()

    def __call__(self, *args: str, workspace: bool = True, input: str | None = None) -> Result:
        from mlx_rsi.cli import cli

        argv = (["--workspace", str(self.workspace)] if workspace else []) + list(args)
        return self.runner.invoke(cli, argv, input=input, catch_exceptions=True)

    def main(self, *args: str, workspace: bool = True) -> tuple[int, str, str]:
        """Through ``cli.main`` (the error mapping): returns (exit code, stdout, stderr)."""
        import contextlib
        import io

        from mlx_rsi.cli import main

        argv = (["--workspace", str(self.workspace)] if workspace else []) + list(args)
        out, err = io.StringIO(), io.StringIO()
        code = 0
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(argv)
            except SystemExit as e:
                code = int(e.code or 0)
        return code, out.getvalue(), err.getvalue()


@pytest.fixture
def workspace_dir(tmp_path: Path) -> Path:
    return tmp_path / "ws"


@pytest.fixture
def cli(workspace_dir: Path) -> Cli:
    return Cli(workspace_dir)


@pytest.fixture
def in_tmp_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield tmp_path
