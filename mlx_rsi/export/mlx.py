"""The MLX export: the fused model converted by mlx-lm, optionally 4/8-bit quantized.

``mlx_lm.convert`` reads the HF-layout fused model and writes an mlx-lm folder
(``mlx_lm.load`` / ``mlx_lm.generate`` / LM Studio). It is checked by loading it back
with mlx-lm and generating a few tokens before the folder is renamed into place.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

from mlx_rsi.errors import ModelError
from mlx_rsi.export.fuse import saved_dtype

log = logging.getLogger(__name__)
GROUP_SIZE = 64


def write_mlx(fused_dir: Path, out_dir: Path, bits: int | None, dtype: str | None = None) -> Path:
    """Convert ``fused_dir`` to MLX in ``out_dir`` (must not exist yet); quantize if ``bits``.

    ``dtype``: of the weights left unquantized (default: what the fused model records)."""
    try:
        from mlx_lm import convert
    except ImportError as e:
        raise ModelError(
            "MLX export needs mlx-lm", hint="pip install 'mlx-rsi[mlx]' (or export hf / gguf)"
        ) from e
    chatter = io.StringIO()  # mlx-lm prints its progress; keep it for the debug log
    try:
        with contextlib.redirect_stdout(chatter):
            convert(
                str(fused_dir),
                mlx_path=str(out_dir),
                quantize=bits is not None,
                q_bits=bits or 4,
                q_group_size=GROUP_SIZE,
                dtype=dtype or saved_dtype(fused_dir),
            )
    except ValueError as e:
        raise ModelError(f"mlx-lm cannot convert {fused_dir}: {e}") from e
    finally:
        log.debug("mlx_lm.convert: %s", chatter.getvalue().strip())
    return out_dir


def verify_mlx(model_dir: Path, max_tokens: int = 4) -> str:
    """Load with mlx-lm and generate greedily; the text generated."""
    from mlx_lm import generate, load

    model, tokenizer = load(str(model_dir))[:2]
    return str(generate(model, tokenizer, prompt="Hello", max_tokens=max_tokens, verbose=False))
