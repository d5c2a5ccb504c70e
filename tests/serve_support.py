"""Test support for the serve tests: versions registered directly on a tiny model."""

from __future__ import annotations

from pathlib import Path

from mlx_rsi import registry
from mlx_rsi.workspace import Workspace


def register_versions(root: Path, model_dir: Path, names: list[str]) -> Workspace:
    """Versions whose fused HF export is ``model_dir``; the last one current.

    Training is not what these tests are about, so versions are recorded as a cycle
    would record them after fusing, pointing at a tiny model built in-test.
    """
    ws = Workspace(root)
    ws.create()
    conn = ws.store()
    try:
        for name in names:
            version = registry.Version(
                name, "candidate", parent="v1.0", artifacts={"hf": str(model_dir)}
            )
            registry.record_version(conn, version)
        registry.promote(conn, names[-1])
    finally:
        conn.close()
    return ws
