"""The HF export: the fused model's safetensors (base dtype), config and tokenizer.

What transformers, vLLM and llama.cpp's converter read. Checked by loading it with
transformers and generating one token before the folder is renamed into place.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mlx_rsi.errors import ModelError
from mlx_rsi.export.fuse import EMBEDDED_MARKER, cast_to_dtype, saved_dtype

SKIPPED = ("README.md", EMBEDDED_MARKER)


def write_hf(fused_dir: Path, out_dir: Path, base_dir: Path) -> Path:
    """Copy the fused model into ``out_dir`` (an empty staging folder) in the base's dtype."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for item in sorted(Path(fused_dir).iterdir()):
        if item.is_file() and item.name not in SKIPPED and not item.name.startswith("."):
            shutil.copy2(item, out_dir / item.name)
    cast_to_dtype(out_dir, saved_dtype(base_dir))
    return out_dir


def verify_hf(model_dir: Path) -> str:
    """Load with transformers and greedily generate a few tokens; the text generated."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mlx_rsi.export.parity import quiet_transformers

    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
            model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    except (OSError, ValueError) as e:
        raise ModelError(f"transformers cannot load the HF export {model_dir}: {e}") from e
    ids = tokenizer("Hello", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    return str(tokenizer.decode(out[0][ids["input_ids"].shape[1] :]))
