"""The fused model every format is derived from: adapter merged into the base, base dtype.

A promoted version already has ``models/vX/hf`` (the cycle's promote stage fuses it);
otherwise the version's adapter is fused here through the training backend (the MLX
backend dequantizes a quantized base first). The result is then brought to the dtype
the base model was saved in, so a bf16 base gives a bf16 export, not a float32 copy.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from mlx_rsi import atomic
from mlx_rsi.errors import ModelError

log = logging.getLogger(__name__)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")


def fuse_adapter(backend: Any, base_dir: Path, adapter_dir: Path, out_dir: Path) -> Path:
    """Merge ``adapter_dir`` into ``base_dir`` with ``backend`` and save it, in base dtype."""
    if not Path(adapter_dir).is_dir():
        raise ModelError(f"adapter folder {adapter_dir} does not exist")
    with atomic.staged_dir(Path(out_dir)) as staging:
        backend.fuse(Path(base_dir), Path(adapter_dir), staging / "model")
        cast_to_dtype(staging / "model", saved_dtype(base_dir))
        for item in (staging / "model").iterdir():
            item.rename(staging / item.name)
        (staging / "model").rmdir()
    return Path(out_dir)


EMBEDDED_MARKER = "mlx-rsi-source.json"  # written by mlx_rsi.basemodel into its conversion


def saved_dtype(model_dir: Path) -> str:
    """The dtype a model's weights are published in (``float32`` when the config says none).

    The embedded Gemma-3-270M is cached as a float32 dequantization of its GGUF, but the
    model is a bfloat16 one (google/gemma-3-270m): its exports are bfloat16, half the size.
    """
    if (Path(model_dir) / EMBEDDED_MARKER).is_file():
        return "bfloat16"
    config = read_model_config(model_dir)
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    name = config.get("dtype") or config.get("torch_dtype") or (text or {}).get("dtype")
    return str(name or "float32")


def read_model_config(model_dir: Path) -> dict[str, Any]:
    """``config.json`` of a model folder; one ModelError line when it cannot be read."""
    path = Path(model_dir) / "config.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read {path}: {e}") from e
    return data


def check_model_files(model_dir: Path) -> None:
    """One clear line when a model folder lacks what every export needs."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ModelError(f"{model_dir} has no config.json")
    if not any(model_dir.glob("*.safetensors")):
        raise ModelError(f"{model_dir} has no *.safetensors weights")
    if not any((model_dir / name).is_file() for name in TOKENIZER_FILES):
        raise ModelError(
            f"{model_dir} has no tokenizer files (tokenizer.json or tokenizer.model)",
            hint="save the tokenizer into the model folder (tokenizer.save_pretrained)",
        )


def cast_to_dtype(model_dir: Path, dtype: str) -> bool:
    """Rewrite the safetensors of ``model_dir`` in ``dtype`` if any floating tensor differs."""
    import torch
    from safetensors.torch import load_file, save_file

    target = getattr(torch, dtype, None)
    if not isinstance(target, torch.dtype):
        log.warning("unknown dtype '%s' in config; weights kept as saved", dtype)
        return False
    changed = False
    for file in sorted(Path(model_dir).glob("*.safetensors")):
        tensors = load_file(str(file))
        if all(t.dtype == target or not t.is_floating_point() for t in tensors.values()):
            continue
        cast = {k: (v.to(target) if v.is_floating_point() else v) for k, v in tensors.items()}
        tmp = file.with_name(f".{file.name}.tmp")
        save_file(cast, str(tmp), metadata={"format": "pt"})
        tmp.replace(file)
        changed = True
    if changed:
        config = read_model_config(model_dir)
        config["dtype"] = dtype
        config.pop("torch_dtype", None)
        atomic.write_text(Path(model_dir) / "config.json", json.dumps(config, indent=2) + "\n")
    return changed
