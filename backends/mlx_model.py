"""Base model, QLoRA quantization, LoRA/DoRA layers and adapter files for the MLX backend.

Adapters use mlx-lm's layout (``adapters.safetensors`` + ``adapter_config.json``) so
``mlx_lm.load(model, adapter_path=...)`` loads them. The config carries mlx-lm's keys
(``fine_tune_type``, ``num_layers``, ``lora_parameters`` with ``rank``/``scale``/
``dropout``/``keys``) plus ours (``alpha``, ``quantize_bits``, ``quantize_group_size``,
``template``, ...), which mlx-lm ignores. An adapter trained on a quantized base is
applied to the same quantized base when we evaluate, generate or fuse it, so what is
measured is what is exported.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from backends import adapter_settings
from backends.base import TrainSpec
from backends.chat import resolve_template
from mlx_rsi import atomic
from mlx_rsi.errors import ModelError, UsageError

ADAPTER_WEIGHTS = "adapters.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
QUANT_BITS = (2, 3, 4, 5, 6, 8)
QUANT_GROUP_SIZES = (64, 32)
DTYPES = {"bf16": mx.bfloat16, "fp16": mx.float16, "fp32": mx.float32}
ADAPTER_LEAVES = ("lora_a", "lora_b", "m")


@dataclass
class Loaded:
    """A loaded model with its tokenizer wrapper, HF tokenizer and config dict."""

    model: nn.Module
    tokenizer: Any  # mlx_lm TokenizerWrapper (generation, detokenizer)
    config: dict[str, Any]

    @property
    def hf_tokenizer(self) -> Any:
        return self.tokenizer._tokenizer


def load_base(
    model_dir: Path, *, quantize_bits: int | None = None, precision: str = "auto"
) -> tuple[Loaded, int | None]:
    """Load an HF-layout model with mlx-lm; cast and quantize it as asked.

    Returns the model and the quantization group size used (None when not quantized).
    """
    from mlx_lm.utils import load

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ModelError(
            f"no config.json in {model_dir}", hint="point model_dir at an HF-layout model folder"
        )
    try:
        model, tokenizer, config = cast(
            tuple[Any, Any, Any], load(str(model_dir), return_config=True)
        )
    except (ValueError, FileNotFoundError, KeyError) as e:
        raise ModelError(
            f"mlx-lm cannot load {model_dir}: {e}",
            hint="check that the model is an HF-layout safetensors model mlx-lm supports",
        ) from e
    if precision in DTYPES:
        model.set_dtype(DTYPES[precision])
    group_size = quantize(model, quantize_bits) if quantize_bits else None
    return Loaded(model, tokenizer, config), group_size


def quantize(model: nn.Module, bits: int, group_size: int | None = None) -> int:
    """Quantize every quantizable layer in place (QLoRA's frozen base); returns group size."""
    if bits not in QUANT_BITS:
        raise UsageError(
            f"quantize_bits={bits} is not supported by MLX",
            hint=f"use one of {', '.join(map(str, QUANT_BITS))}",
        )
    if group_size is None:
        group_size = _group_size(model)

    def predicate(_: str, module: nn.Module) -> bool:
        weight = getattr(module, "weight", None)
        return (
            hasattr(module, "to_quantized")
            and weight is not None
            and weight.shape[-1] % group_size == 0
        )

    nn.quantize(model, group_size=group_size, bits=bits, class_predicate=predicate)
    return group_size


def _group_size(model: nn.Module) -> int:
    """The largest supported group size dividing every linear input dimension."""
    dims = {m.weight.shape[-1] for _, m in model.named_modules() if isinstance(m, nn.Linear)}
    for size in QUANT_GROUP_SIZES:
        if all(d % size == 0 for d in dims):
            return size
    raise UsageError(
        f"cannot quantize: layer input sizes {sorted(dims)} are not multiples of 32",
        hint="train without quantize_bits (plain LoRA) on this model",
    )


def linear_paths(model: nn.Module, num_layers: int) -> list[str]:
    """Paths (relative to a block) of every linear layer in the last ``num_layers`` blocks."""
    kinds = (nn.Linear, nn.QuantizedLinear)
    paths: set[str] = set()
    for block in model.layers[-num_layers:]:
        paths.update(k for k, m in block.named_modules() if isinstance(m, kinds) and k)
    return sorted(paths)


def resolve_keys(model: nn.Module, targets: Sequence[str], num_layers: int) -> list[str]:
    """mlx-lm ``keys`` for LoRA: "all" = every linear layer; else names like q_proj."""
    available = linear_paths(model, num_layers)
    if "all" in targets:
        return available
    chosen = [p for p in available if p in targets or p.rsplit(".", 1)[-1] in targets]
    known = {p.rsplit(".", 1)[-1] for p in available} | set(available)
    unknown = [t for t in targets if t not in known]
    if unknown or not chosen:
        names = sorted({p.rsplit(".", 1)[-1] for p in available})
        raise UsageError(
            f"unknown LoRA target module(s) {unknown or list(targets)}",
            hint=f"use 'all' or some of: {', '.join(names)}",
        )
    return chosen


def layer_count(model: nn.Module, num_layers: int | None) -> int:
    total = len(model.layers)
    if num_layers is None:
        return total
    if not 0 < num_layers <= total:
        raise UsageError(
            f"num_layers={num_layers} but the model has {total} blocks",
            hint=f"use a value from 1 to {total}, or leave it unset for all",
        )
    return num_layers


def adapter_config(spec: TrainSpec, loaded: Loaded, group_size: int | None) -> dict[str, Any]:
    """The adapter_config.json for ``spec``: mlx-lm's keys plus ours."""
    model = loaded.model
    num_layers = layer_count(model, spec.num_layers)
    return {
        "fine_tune_type": "dora" if spec.use_dora else "lora",
        "num_layers": num_layers,
        "lora_parameters": {
            "rank": spec.rank,
            "scale": spec.alpha / spec.rank,
            "dropout": spec.dropout,
            "keys": resolve_keys(model, spec.target_modules, num_layers),
        },
        "alpha": spec.alpha,
        "target_modules": list(spec.target_modules),
        "quantize_bits": spec.quantize_bits,
        "quantize_group_size": group_size,
        "template": spec.template,
        "fallback_template": spec.fallback_template,
        # What training rendered chats with: "native" or a fallback's name.
        "trained_template": resolve_template(
            loaded.hf_tokenizer, spec.template, spec.fallback_template
        ),
        "cutoff_len": spec.cutoff_len,
        "train_on": spec.train_on,
        "base_model": str(spec.model_dir),
        "backend": "mlx",
    }


def add_adapter_layers(model: nn.Module, config: dict[str, Any]) -> None:
    """Freeze the base and add (untrained) LoRA/DoRA layers per an adapter config."""
    from mlx_lm.tuner.utils import linear_to_lora_layers

    model.freeze()
    linear_to_lora_layers(
        model,
        config["num_layers"],
        config["lora_parameters"],
        use_dora=config.get("fine_tune_type") == "dora",
    )


def adapter_weights(model: nn.Module) -> dict[str, mx.array]:
    """The adapter tensors of a model (by mlx-lm name)."""
    return {
        k: v for k, v in flat(model.parameters()).items() if k.rsplit(".", 1)[-1] in ADAPTER_LEAVES
    }


def flat(tree: Any) -> dict[str, Any]:
    """``tree_flatten`` as a dict of dotted names."""
    return dict(cast(list[tuple[str, Any]], tree_flatten(tree)))


def load_tensors(path: Path) -> dict[str, mx.array]:
    """The tensors of a safetensors file."""
    return cast(dict[str, mx.array], mx.load(str(path)))


def write_adapter_files(folder: Path, model: nn.Module, config: dict[str, Any]) -> None:
    """Write weights, config and the template record into an existing (staging) folder."""
    mx.save_safetensors(str(folder / ADAPTER_WEIGHTS), adapter_weights(model))
    (folder / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    # The same settings, in the file every backend reads (it survives conversion to PEFT).
    adapter_settings.write_settings(folder, adapter_settings.read_settings(folder))


def save_adapter(dst: Path, model: nn.Module, config: dict[str, Any]) -> Path:
    """Write an mlx-lm adapter folder atomically."""
    with atomic.staged_dir(dst, replace=True) as tmp:
        write_adapter_files(tmp, model, config)
    return dst


def read_adapter_config(adapter_dir: Path) -> dict[str, Any]:
    path = Path(adapter_dir) / ADAPTER_CONFIG
    try:
        config: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise ModelError(
            f"no {ADAPTER_CONFIG} in {adapter_dir}",
            hint="point at an MLX adapter folder (convert a PEFT adapter first)",
        ) from e
    except json.JSONDecodeError as e:
        raise ModelError(f"{path}: invalid JSON ({e})", hint="re-export the adapter") from e
    return config


def load_adapter_weights(model: nn.Module, adapter_dir: Path) -> None:
    """Load adapter tensors into a model that already has the adapter layers."""
    weights = load_tensors(Path(adapter_dir) / ADAPTER_WEIGHTS)
    expected = adapter_weights(model)
    problems = [k for k, v in weights.items() if k not in expected or v.shape != expected[k].shape]
    if problems or len(weights) != len(expected):
        raise ModelError(
            f"adapter {adapter_dir} does not fit this model ({len(problems)} mismatched "
            f"tensor(s), e.g. {problems[:2]})",
            hint="use the base model the adapter was trained on",
        )
    model.load_weights(list(weights.items()), strict=False)


def load_with_adapter(
    model_dir: Path, adapter_dir: Path | None, *, precision: str = "auto"
) -> tuple[Loaded, dict[str, Any] | None]:
    """The base (quantized as the adapter was trained) with the adapter applied."""
    if adapter_dir is None:
        loaded, _ = load_base(model_dir, precision=precision)
        return loaded, None
    config = read_adapter_config(adapter_dir)
    bits = config.get("quantize_bits")
    loaded, _ = load_base(model_dir, precision=precision)
    if bits:
        quantize(loaded.model, int(bits), config.get("quantize_group_size"))
    add_adapter_layers(loaded.model, config)
    load_adapter_weights(loaded.model, adapter_dir)
    loaded.model.eval()
    return loaded, config


def trainable_count(model: nn.Module) -> int:
    return sum(int(v.size) for v in flat(model.trainable_parameters()).values())
