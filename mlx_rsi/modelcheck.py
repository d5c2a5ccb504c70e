"""Cheap checks of a base model folder, run before any stage does work.

A truncated or empty ``*.safetensors`` file or a ``config.json`` value of the wrong
type used to surface as a framework traceback after ingest and curation had run.
These checks read only ``config.json`` and each weights file's header (its first
8 bytes, the JSON header and the file size), so they take milliseconds even for a
large model, and say which file is wrong and how.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from mlx_rsi.errors import ModelError

# config.json keys whose type the frameworks rely on; checked when present.
_INT_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
    "max_position_embeddings",
    "head_dim",
)
_NUMBER_KEYS = ("rms_norm_eps", "layer_norm_eps", "rope_theta", "initializer_range")
_NESTED = ("text_config",)  # multimodal configs keep the language model's keys here
_MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors format's own limit
_HINT = "the base model folder is damaged: copy or download it again"


def check_model_folder(folder: Path) -> None:
    """Raise a one-line ModelError when ``folder``'s config or weights headers are broken."""
    check_config(folder / "config.json")
    for weights in sorted(folder.glob("*.safetensors")):
        check_safetensors(weights)


def check_config(path: Path) -> None:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ModelError(f"cannot read {path}: {e}", hint=_HINT) from e
    except json.JSONDecodeError as e:
        raise ModelError(
            f"{path}:{e.lineno}: not valid JSON: {e.msg}", hint="fix or restore the file"
        ) from e
    if not isinstance(config, dict):
        raise ModelError(f"{path}: the top level must be a JSON object", hint=_HINT)
    problems = _type_problems(config, "")
    for key in _NESTED:
        if isinstance(config.get(key), dict):
            problems += _type_problems(config[key], f"{key}.")
    if problems:
        raise ModelError(f"{path}: {'; '.join(problems)}", hint="fix the value(s) in config.json")


def _type_problems(config: dict[str, Any], prefix: str) -> list[str]:
    problems = []
    for key in _INT_KEYS:
        value = config.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            problems.append(f"{prefix}{key} must be an integer, got {value!r}")
        elif isinstance(value, int) and value <= 0:
            problems.append(f"{prefix}{key} must be positive, got {value}")
    for key in _NUMBER_KEYS:
        value = config.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            problems.append(f"{prefix}{key} must be a number, got {value!r}")
    model_type = config.get("model_type")
    if model_type is not None and not isinstance(model_type, str):
        problems.append(f"{prefix}model_type must be a string, got {model_type!r}")
    return problems


def check_safetensors(path: Path) -> None:
    """The header parses and every tensor's bytes lie inside the file."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            prefix = handle.read(8)
            length = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else -1
            if length < 2 or length > min(_MAX_HEADER_BYTES, size - 8):
                raise _broken(path, size, "its header is missing or cut off")
            header = json.loads(handle.read(length))
    except OSError as e:
        raise ModelError(f"cannot read {path}: {e}", hint=_HINT) from e
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _broken(path, size, "its header is not valid JSON") from e
    if not isinstance(header, dict):
        raise _broken(path, size, "its header is not a JSON object")
    data_bytes = size - 8 - length
    end = max((_end(name, info, path, size) for name, info in header.items()), default=0)
    if end > data_bytes:
        raise _broken(path, size, f"its tensors need {end} data bytes, the file holds {data_bytes}")


def _end(name: str, info: Any, path: Path, size: int) -> int:
    if name == "__metadata__":
        return 0
    offsets = info.get("data_offsets") if isinstance(info, dict) else None
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(x, int) and not isinstance(x, bool) for x in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise _broken(path, size, f"tensor {name!r} has no valid data_offsets")
    return int(offsets[1])


def _broken(path: Path, size: int, why: str) -> ModelError:
    what = "is empty" if size == 0 else f"is truncated or damaged ({size} bytes): {why}"
    return ModelError(f"weights file {path} {what}", hint=_HINT)
