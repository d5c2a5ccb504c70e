"""Export a version: fused MLX (+4/8-bit), HF safetensors, GGUF (own writer), card, Modelfile.

One module per artifact (``hf``, ``mlx``, ``gguf`` + ``vocab``, ``card``), the fused
model they derive from (``fuse``), the GGUF-vs-transformers check (``parity``) and the
stage that composes them (``stage.export_version``). Heavy libraries (torch, mlx,
llama-cpp) are imported only inside the functions that need them.
"""

from mlx_rsi.export.stage import ExportError, ExportResult, export_version

__all__ = ["ExportError", "ExportResult", "export_version"]
