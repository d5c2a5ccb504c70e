"""Export format names, the shorthands config and CLI accept, and where each one goes.

``mlx``, ``mlx-q4``, ``mlx-q8``, ``hf``, ``gguf-<type>`` and ``ollama`` are formats;
``gguf`` stands for every type in ``export.gguf_types`` and ``mlx`` adds ``mlx-q<bits>``
for each of ``export.mlx_quantize_bits``.
Imports nothing but errors: config validation uses it, so it lives beside config,
not inside the export stage.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from mlx_rsi.errors import UsageError

FLOAT_GGUF_TYPES = ("f32", "f16", "bf16", "q8_0")  # written by gguf.quants
K_QUANT_TYPES = ("q4_k_m", "q4_k_s", "q5_k_m", "q5_k_s", "q6_k", "q3_k_m", "q2_k")  # llama.cpp
GGUF_TYPES = FLOAT_GGUF_TYPES + K_QUANT_TYPES
MLX_BITS = (4, 8)
FORMATS = (
    "mlx",
    *(f"mlx-q{b}" for b in MLX_BITS),
    "hf",
    *(f"gguf-{t}" for t in GGUF_TYPES),
    "ollama",
)
SHORTHANDS = ("gguf",)


def expand_formats(
    names: Iterable[str], gguf_types: Iterable[str] = ("f16",), mlx_bits: Iterable[int] = ()
) -> list[str]:
    """Format names in a fixed order, shorthands expanded, unknown names refused."""
    wanted: set[str] = set()
    for raw in names:
        for name in (part.strip().lower() for part in str(raw).split(",")):
            if not name:
                continue
            wanted.update(_expand_one(name, tuple(gguf_types), tuple(mlx_bits)))
    if "ollama" in wanted and not any(f.startswith("gguf-") for f in wanted):
        wanted.add("gguf-q8_0")  # Ollama runs a GGUF: bring one along
    return [f for f in FORMATS if f in wanted]


def _expand_one(name: str, gguf_types: tuple[str, ...], mlx_bits: tuple[int, ...]) -> list[str]:
    if name == "gguf":
        return [check_format(f"gguf-{t.lower()}") for t in gguf_types]
    if name == "mlx":
        return ["mlx", *(check_format(f"mlx-q{b}") for b in mlx_bits)]
    return [check_format(name)]


def check_format(name: str) -> str:
    if name not in FORMATS:
        close = difflib.get_close_matches(name, [*FORMATS, *SHORTHANDS], n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"use {', '.join(FORMATS)} or gguf"
        raise UsageError(f"unknown export format '{name}'", hint=hint)
    return name


def gguf_type(fmt: str) -> str:
    return fmt.removeprefix("gguf-")


def folder_for(fmt: str) -> str:
    """The subfolder of the export folder a format is written to."""
    if fmt.startswith("gguf-") or fmt == "ollama":
        return "gguf"
    return fmt
