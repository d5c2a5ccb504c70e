"""Convert LoRA/DoRA adapters between mlx-lm's layout and PEFT's (numpy only).

mlx-lm: ``adapters.safetensors`` + ``adapter_config.json`` (``lora_parameters``: rank,
scale, dropout, keys; ``num_layers``). PEFT: ``adapter_model.safetensors`` +
``adapter_config.json`` (r, lora_alpha, target_modules, layers_to_transform, use_dora).

- A: mlx ``model.layers.N.self_attn.q_proj.lora_a`` (in, r) <->
  PEFT ``base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight`` (r, in)
- B: mlx ``...lora_b`` (r, out) <-> PEFT ``...lora_B.weight`` (out, r)
- DoRA magnitude: mlx ``...m`` (out,) <-> PEFT ``...lora_magnitude_vector`` (out,)
- scaling: mlx ``scale`` <-> PEFT ``lora_alpha / r`` (``lora_alpha / sqrt(r)`` with rsLoRA)

Both compute ``y = W x + scaling * B A x`` (DoRA: rescaled per output row by
``m / ||W + scaling * B A||``), so the conversion is a transpose, a rename and a scale.
mlx-lm adapts the same ``keys`` in each of the last ``num_layers`` blocks; a PEFT
adapter covering a sparser set becomes an MLX adapter whose extra modules have zero
A and B (no change to the output). Tensor names and shapes are checked against the
base model's weights, so an adapter never lands on modules that do not exist.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from backends.adapter_settings import read_settings, write_settings
from mlx_rsi import atomic
from mlx_rsi.errors import ModelError, UsageError

MLX_WEIGHTS, MLX_CONFIG = "adapters.safetensors", "adapter_config.json"
PEFT_WEIGHTS, PEFT_CONFIG = "adapter_model.safetensors", "adapter_config.json"
PEFT_PREFIX = "base_model.model."
LAYOUTS = ("mlx", "peft")
_LAYER = re.compile(r"^(?P<stem>.*\.layers)\.(?P<index>\d+)\.(?P<rel>.+)$")
_DTYPES = {"F32": "<f4", "F16": "<f2", "F64": "<f8"}
# PEFT features mlx-lm adapters cannot express.
_PEFT_UNSUPPORTED = ("modules_to_save", "rank_pattern", "alpha_pattern", "trainable_token_indices")


@dataclass
class Module:
    """One adapted linear layer, in PEFT orientation: A (r, in), B (out, r)."""

    path: str  # module path in the base model, e.g. model.layers.3.self_attn.q_proj
    lora_a: np.ndarray
    lora_b: np.ndarray
    magnitude: np.ndarray | None = None  # DoRA


@dataclass
class Adapter:
    """A layout-neutral adapter: modules plus the shared hyper-parameters."""

    modules: dict[str, Module]
    rank: int
    scale: float
    dropout: float
    dora: bool


def convert_adapter(
    src: Path, dst: Path, *, to: str, base_model_dir: Path, replace: bool = False
) -> Path:
    """Convert the adapter in ``src`` to layout ``to`` ("mlx" or "peft") and write ``dst``.

    An existing non-empty ``dst`` is replaced only with ``replace`` (``--force``).
    """
    src, dst, base_model_dir = Path(src), Path(dst), Path(base_model_dir)
    if to not in LAYOUTS:
        raise UsageError(f"unknown adapter layout '{to}'", hint=f"use one of {', '.join(LAYOUTS)}")
    layout = detect_layout(src)
    if layout == to:
        raise UsageError(f"{src} is already a {to} adapter", hint="nothing to convert")
    adapter = read_mlx(src) if layout == "mlx" else read_peft(src)
    base = BaseModel(base_model_dir)
    base.check(adapter)
    with atomic.staged_dir(dst, replace=replace) as tmp:
        if to == "peft":
            write_peft(tmp, adapter, base_model_dir)
        else:
            write_mlx(tmp, adapter, base)
        # How training rendered, cut and masked its chats travels with the weights.
        write_settings(tmp, read_settings(src))
    return dst


def detect_layout(folder: Path) -> str:
    if (folder / MLX_WEIGHTS).is_file():
        return "mlx"
    if (folder / PEFT_WEIGHTS).is_file():
        return "peft"
    raise ModelError(
        f"{folder} holds neither {MLX_WEIGHTS} (MLX) nor {PEFT_WEIGHTS} (PEFT)",
        hint="point at an adapter folder",
    )


# --- reading ---------------------------------------------------------------------------------


def read_tensors(path: Path) -> dict[str, np.ndarray]:
    """A safetensors file as float32 numpy arrays (bf16 included, which numpy lacks)."""
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    body = memoryview(raw)[8 + size :]
    out: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        chunk = body[start:end]
        if info["dtype"] == "BF16":
            bits = np.frombuffer(chunk, dtype="<u2").astype(np.uint32) << 16
            array = bits.view(np.float32)
        elif info["dtype"] in _DTYPES:
            array = np.frombuffer(chunk, dtype=_DTYPES[info["dtype"]]).astype(np.float32)
        else:
            raise ModelError(f"{path}: tensor {name} has dtype {info['dtype']}, not a float")
        out[name] = array.reshape(info["shape"])
    return out


def _json(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError) as e:
        raise ModelError(f"cannot read {path}: {e}", hint="is this a complete adapter?") from e


def read_mlx(folder: Path) -> Adapter:
    config = _json(folder / MLX_CONFIG)
    kind = config.get("fine_tune_type", "lora")
    if kind not in ("lora", "dora"):
        raise ModelError(
            f"{folder}: fine_tune_type '{kind}' is not an adapter", hint="only LoRA/DoRA convert"
        )
    params = config["lora_parameters"]
    modules: dict[str, Module] = {}
    for name, array in read_tensors(folder / MLX_WEIGHTS).items():
        path, leaf = name.rsplit(".", 1)
        module = modules.setdefault(path, Module(path, np.empty(0), np.empty(0)))
        if leaf == "lora_a":
            module.lora_a = array.T
        elif leaf == "lora_b":
            module.lora_b = array.T
        elif leaf == "m":
            module.magnitude = array
        else:
            raise ModelError(f"{folder}: unexpected adapter tensor {name}")
    return Adapter(
        modules, int(params["rank"]), float(params["scale"]), float(params.get("dropout", 0.0)),
        kind == "dora",
    )  # fmt: skip


def _check_peft_config(folder: Path, config: dict[str, Any]) -> None:
    problems = [k for k in _PEFT_UNSUPPORTED if config.get(k)]
    if config.get("peft_type", "LORA") != "LORA":
        problems.append(f"peft_type={config.get('peft_type')}")
    if config.get("bias", "none") != "none" or config.get("lora_bias"):
        problems.append("bias")
    if config.get("fan_in_fan_out"):
        problems.append("fan_in_fan_out")
    if problems:
        raise ModelError(
            f"{folder}: PEFT features MLX adapters cannot hold: {', '.join(problems)}",
            hint="retrain with plain LoRA/DoRA on linear layers (one rank and alpha)",
        )


def read_peft(folder: Path) -> Adapter:
    config = _json(folder / PEFT_CONFIG)
    _check_peft_config(folder, config)
    modules: dict[str, Module] = {}
    for name, array in read_tensors(folder / PEFT_WEIGHTS).items():
        stripped = name.removeprefix(PEFT_PREFIX)
        for suffix, field in (
            (".lora_A.weight", "lora_a"),
            (".lora_B.weight", "lora_b"),
            (".lora_magnitude_vector", "magnitude"),
        ):
            if stripped.endswith(suffix):
                path = stripped.removesuffix(suffix)
                module = modules.setdefault(path, Module(path, np.empty(0), np.empty(0)))
                setattr(module, field, array)
                break
        else:
            raise ModelError(
                f"{folder}: tensor {name} is not a LoRA A/B or DoRA magnitude",
                hint="only adapters on linear layers convert (no embedding LoRA)",
            )
    rank = int(config["r"])
    alpha = float(config.get("lora_alpha", rank))
    scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
    return Adapter(
        modules, rank, scale, float(config.get("lora_dropout", 0.0)), bool(config.get("use_dora"))
    )


# --- the base model --------------------------------------------------------------------------


class BaseModel:
    """Weight names and shapes of the base model (read from safetensors headers only)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        files = sorted(folder.glob("*.safetensors"))
        if not files:
            raise ModelError(f"no safetensors weights in {folder}", hint="pass the HF base model")
        self.shapes: dict[str, tuple[int, ...]] = {}
        for file in files:
            self.shapes.update(_header_shapes(file))
        config = _json(folder / "config.json")
        text = config.get("text_config") or config
        self.num_layers = int(text["num_hidden_layers"])

    def check(self, adapter: Adapter) -> None:
        """Every adapted module exists in the base with matching in/out sizes."""
        bad = []
        for module in adapter.modules.values():
            shape = self.shapes.get(f"{module.path}.weight")
            if shape is None or module.lora_a.ndim != 2 or module.lora_b.ndim != 2:
                bad.append(module.path)
            elif (module.lora_b.shape[0], module.lora_a.shape[1]) != tuple(shape):
                bad.append(f"{module.path} {tuple(shape)}")
        if bad:
            raise ModelError(
                f"adapter does not fit the base model in {self.folder}: {', '.join(bad[:3])}",
                hint="convert against the base model the adapter was trained on",
            )

    def out_in(self, path: str) -> tuple[int, int]:
        out_dim, in_dim = self.shapes[f"{path}.weight"]
        return out_dim, in_dim


def _header_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    with path.open("rb") as handle:
        (size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(size))
    return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}


# --- writing ---------------------------------------------------------------------------------


def _split(path: str) -> tuple[str, int, str]:
    match = _LAYER.match(path)
    if match is None:
        raise ModelError(
            f"adapted module {path} is not inside a transformer block",
            hint="MLX adapters cover block layers only (model.layers.N...)",
        )
    return match["stem"], int(match["index"]), match["rel"]


def write_peft(folder: Path, adapter: Adapter, base_model_dir: Path) -> None:
    tensors: dict[str, np.ndarray] = {}
    for path, module in sorted(adapter.modules.items()):
        prefix = f"{PEFT_PREFIX}{path}"
        tensors[f"{prefix}.lora_A.weight"] = np.ascontiguousarray(module.lora_a)
        tensors[f"{prefix}.lora_B.weight"] = np.ascontiguousarray(module.lora_b)
        if module.magnitude is not None:
            tensors[f"{prefix}.lora_magnitude_vector"] = module.magnitude
    save_file(tensors, str(folder / PEFT_WEIGHTS), metadata={"format": "pt"})
    parts = [_split(p) for p in adapter.modules]
    rels = sorted({rel for _, _, rel in parts})
    layers = sorted({index for _, index, _ in parts})
    regular = len(parts) == len(rels) * len(layers)
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": str(base_model_dir),
        "r": adapter.rank,
        "lora_alpha": adapter.scale * adapter.rank,
        "lora_dropout": adapter.dropout,
        "use_dora": adapter.dora,
        "use_rslora": False,
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        # A product of keys x layers keeps the short form; otherwise name every module.
        "target_modules": rels if regular else sorted(adapter.modules),
        "layers_to_transform": layers if regular else None,
        "layers_pattern": "layers" if regular else None,
    }
    (folder / PEFT_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def write_mlx(folder: Path, adapter: Adapter, base: BaseModel) -> None:
    parts = [_split(p) for p in adapter.modules]
    stems = {stem for stem, _, _ in parts}
    if len(stems) != 1:
        raise ModelError(
            f"cannot convert: the adapter spans several layer stacks ({', '.join(sorted(stems))})",
            hint="mlx-lm adapters cover one stack of transformer blocks",
        )
    stem = stems.pop()
    first = min(index for _, index, _ in parts)
    rels = sorted({rel for _, _, rel in parts})
    tensors: dict[str, np.ndarray] = {}
    for index in range(first, base.num_layers):
        for rel in rels:
            path = f"{stem}.{index}.{rel}"
            module = adapter.modules.get(path) or _zero_module(path, adapter, base)
            tensors[f"{path}.lora_a"] = np.ascontiguousarray(module.lora_a.T)
            tensors[f"{path}.lora_b"] = np.ascontiguousarray(module.lora_b.T)
            if module.magnitude is not None:
                tensors[f"{path}.m"] = module.magnitude
    save_file(tensors, str(folder / MLX_WEIGHTS), metadata={"format": "mlx"})
    config = {
        "fine_tune_type": "dora" if adapter.dora else "lora",
        "num_layers": base.num_layers - first,
        "lora_parameters": {
            "rank": adapter.rank,
            "scale": adapter.scale,
            "dropout": adapter.dropout,
            "keys": rels,
        },
        "alpha": adapter.scale * adapter.rank,
        "base_model": str(base.folder),
        "converted_from": "peft",
    }
    (folder / MLX_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _zero_module(path: str, adapter: Adapter, base: BaseModel) -> Module:
    """A no-op module for mlx-lm's keys x last-N-layers grid (LoRA only)."""
    if adapter.dora:
        raise ModelError(
            f"cannot convert: the DoRA adapter leaves {path} out, and mlx-lm adapts the same "
            "modules in each of the last N blocks",
            hint="train the DoRA adapter on the same modules in a contiguous run of last blocks",
        )
    if f"{path}.weight" not in base.shapes:
        raise ModelError(
            f"cannot convert: mlx-lm would adapt {path}, which the base model lacks",
            hint="convert against the base model the adapter was trained on",
        )
    out_dim, in_dim = base.out_in(path)
    return Module(
        path,
        np.zeros((adapter.rank, in_dim), np.float32),
        np.zeros((out_dim, adapter.rank), np.float32),
    )
