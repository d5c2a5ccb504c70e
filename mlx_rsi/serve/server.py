"""Start serving: resolve versions, load their engines, check the bind, run uvicorn.

Loopback binds need no token. Any other address is reachable by other machines,
so it is refused unless ``$MLX_RSI_SERVE_TOKEN`` holds a bearer token, which every
``/v1`` request must then present; the token is never read from argv or logged.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import sqlite3
from collections.abc import Callable

from mlx_rsi.config import Config
from mlx_rsi.errors import UsageError
from mlx_rsi.serve.abtest import Router, parse_weights
from mlx_rsi.serve.engines import Engine, load_engine
from mlx_rsi.serve.models import ServedModel, resolve_served
from mlx_rsi.serve.recorder import Recorder
from mlx_rsi.workspace import Workspace

log = logging.getLogger(__name__)
TOKEN_ENV = "MLX_RSI_SERVE_TOKEN"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def bind_token(host: str) -> str | None:
    """The bearer token to require, or a UsageError for a public bind without one."""
    token = os.environ.get(TOKEN_ENV) or None
    if token is None and not is_loopback(host):
        raise UsageError(
            f"refusing to serve on {host} without a token: other machines could reach it",
            hint=f"set {TOKEN_ENV} to a secret bearer token, or bind to 127.0.0.1",
        )
    return token


def plan_models(
    ws: Workspace,
    conn: sqlite3.Connection,
    cfg: Config,
    version: str | None,
    ab: str | None,
    engine: str,
) -> tuple[list[ServedModel], Router | None]:
    """What to load: one version, or every version of an A/B split with its router."""
    if ab:
        weights = parse_weights(ab)
        served = [resolve_served(ws, conn, cfg, name, engine) for name in weights]
        return served, Router(weights)
    return [resolve_served(ws, conn, cfg, version, engine)], None


def load_engines(
    served: list[ServedModel], cfg: Config, report: Callable[[str], None]
) -> dict[str, Engine]:
    engines: dict[str, Engine] = {}
    for model in served:
        report(f"loading {model.version} with {model.engine} from {model.path}")
        engines[model.version] = load_engine(
            model.engine, model.path, fallback_template=cfg.train.fallback_template
        )
    return engines


def recorder_for(ws: Workspace, cfg: Config) -> Recorder:
    return Recorder(ws.sessions_dir, enabled=cfg.serve.record)
