"""Which files a version name means for a serving engine.

``None`` means the current version; the base version (``v1.0``) is the base
model itself. A promoted version is served from its exports: the fused HF
folder (transformers), the fused MLX folder (MLX) or a GGUF file (llama.cpp,
q8_0 preferred, then f16, then any), as recorded in the version's artifacts or
found in ``models/<version>/``.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from backends.base import is_apple_silicon
from mlx_rsi import registry
from mlx_rsi.config import Config
from mlx_rsi.errors import ModelError, UsageError
from mlx_rsi.modelpath import resolve_base_model
from mlx_rsi.names import check_name
from mlx_rsi.workspace import Workspace

GGUF_PREFERENCE = ("q8_0", "f16", "bf16", "q4_k_m")


@dataclass(frozen=True)
class ServedModel:
    version: str
    engine: str
    path: Path


def resolve_engine(engine: str) -> str:
    if engine == "auto":
        return "mlx" if is_apple_silicon() else "transformers"
    return engine


def resolve_served(
    ws: Workspace, conn: sqlite3.Connection, cfg: Config, version: str | None, engine: str
) -> ServedModel:
    """The model files to serve ``version`` (None: the current one) with ``engine``."""
    engine = resolve_engine(engine)
    name = version or registry.current_version(conn)
    if name is None:
        raise UsageError(
            "no version has been promoted yet",
            hint="run `mlx-rsi train` first, or serve the base model as v1.0",
        )
    check_name(name, "version")
    if name == registry.BASE_VERSION:
        if engine == "gguf":
            raise UsageError("the base model has no GGUF export: serve it with transformers")
        return ServedModel(name, engine, resolve_base_model(cfg.base_model, ws.root))
    row = conn.execute("SELECT status, artifacts FROM versions WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise UsageError(f"unknown version '{name}'", hint="`mlx-rsi versions` lists them")
    return ServedModel(name, engine, _artifact_path(ws, name, engine, row["artifacts"]))


def _artifact_path(ws: Workspace, name: str, engine: str, artifacts_json: str | None) -> Path:
    artifacts: dict[str, str] = json.loads(artifacts_json or "{}")
    folder = ws.models_dir / name
    if engine == "gguf":
        return _gguf_file(folder, artifacts, name)
    key = "hf" if engine == "transformers" else "mlx"
    path = Path(artifacts[key]) if key in artifacts else folder / key
    if not (path / "config.json").is_file():
        raise ModelError(
            f"version {name} has no {key} export at {path}",
            hint=f"run `mlx-rsi export {name} --format {key}`",
        )
    return path


def _gguf_file(folder: Path, artifacts: dict[str, str], name: str) -> Path:
    for quant in GGUF_PREFERENCE:
        recorded = artifacts.get(f"gguf-{quant}")
        if recorded and Path(recorded).is_file():
            return Path(recorded)
    found = sorted(folder.glob("**/*.gguf"))
    for quant in GGUF_PREFERENCE:
        for path in found:
            if quant in path.name.lower():
                return path
    if found:
        return found[0]
    raise ModelError(
        f"version {name} has no GGUF export in {folder}",
        hint=f"run `mlx-rsi export {name} --format gguf-q8_0`",
    )
