"""Export a version: fused MLX (+4/8-bit), HF safetensors, GGUF (own writer), card, Modelfile.

One module per artifact (``hf``, ``mlx``, ``gguf`` + ``vocab``, ``card``), the fused
model they derive from (``fuse``), the GGUF-vs-transformers check (``parity``), the
format names (``mlx_rsi.artifact_formats``, beside config) and the stage that
composes them (``stage.export_version``). Importing the package imports none of them;
heavy libraries (torch, mlx, llama-cpp) load only inside the functions that need them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ExportError", "ExportResult", "export_version"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from mlx_rsi.export import stage

        return getattr(stage, name)
    raise AttributeError(name)
