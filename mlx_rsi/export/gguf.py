"""Our own HF → GGUF writer on the ``gguf`` package (the one llama.cpp uses).

mlx-lm's GGUF export covers llama only, writes f16 only, and its files no longer load
in llama.cpp; llama.cpp's converter is not installable and refuses tokenizers it has
never seen (FACTS.md). So the conversion lives here: metadata from ``config.json``,
tensor names through ``gguf.TensorNameMap``, the Q/K row permutation llama.cpp's
rotary layout needs for llama-family models, Gemma's ``1 + w`` RMSNorm weights, and
the vocab from :mod:`mlx_rsi.export.vocab`. F16/BF16/Q8_0 come from ``gguf.quants``;
K-quants (Q4_K_M …) from llama.cpp's own quantizer through llama-cpp-python. Files
are written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlx_rsi.artifact_formats import GGUF_TYPES, K_QUANT_TYPES
from mlx_rsi.errors import MlxRsiError
from mlx_rsi.export.vocab import GgufVocab, build_vocab

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]


class GgufError(MlxRsiError):
    """A model cannot be written to (or quantized as) GGUF."""


@dataclass(frozen=True)
class ArchSpec:
    gguf_arch: str  # gguf.MODEL_ARCH member name
    permute_qk: bool = False  # llama.cpp's llama rope layout (interleaved) needs permuted Q/K
    norm_shift: float = 0.0  # Gemma: RMSNorm computes x * (1 + w)


ARCHS: dict[str, ArchSpec] = {
    "llama": ArchSpec("LLAMA", permute_qk=True),
    "mistral": ArchSpec("LLAMA", permute_qk=True),
    "qwen2": ArchSpec("QWEN2"),
    "qwen3": ArchSpec("QWEN3"),
    "gemma3_text": ArchSpec("GEMMA3", norm_shift=1.0),
    "gemma3": ArchSpec("GEMMA3", norm_shift=1.0),
}
_SKIPPED = ("rotary_emb.inv_freq", "attention.masked_bias", "attention.bias")


def write_gguf(
    model_dir: Path, out_path: Path, qtype: str, progress: Progress | None = None
) -> Path:
    """Convert the HF model in ``model_dir`` to ``out_path`` as ``qtype`` (see GGUF_TYPES)."""
    qtype = qtype.lower()
    if qtype not in GGUF_TYPES:
        raise GgufError(f"unknown GGUF type '{qtype}'", hint=f"use one of {', '.join(GGUF_TYPES)}")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if qtype in K_QUANT_TYPES:
        with _temp_path(out_path, ".f16.gguf") as f16:
            _convert(Path(model_dir), f16, "f16", progress)
            with _temp_path(out_path, ".gguf") as tmp:
                quantize_k(f16, tmp, qtype)
                os.replace(tmp, out_path)
        return out_path
    with _temp_path(out_path, ".gguf") as tmp:
        _convert(Path(model_dir), tmp, qtype, progress)
        os.replace(tmp, out_path)
    return out_path


class _temp_path:
    """A temporary sibling path, removed on exit unless it was renamed away."""

    def __init__(self, final: Path, suffix: str) -> None:
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix, dir=final.parent)
        os.close(fd)
        self.path = Path(name)

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *_exc: object) -> None:
        self.path.unlink(missing_ok=True)


def read_config(model_dir: Path) -> dict[str, Any]:
    """The text model's config (a multimodal wrapper's ``text_config``)."""
    from mlx_rsi.export.fuse import read_model_config

    config = read_model_config(model_dir)
    if isinstance(config.get("text_config"), dict):  # multimodal wrapper: the text model
        config = {**config["text_config"], "model_type": config.get("model_type")}
    return config


def arch_spec(config: dict[str, Any]) -> ArchSpec:
    model_type = str(config.get("model_type"))
    spec = ARCHS.get(model_type)
    if spec is None:
        raise GgufError(
            f"GGUF export does not support architecture '{model_type}'",
            hint=f"supported: {', '.join(sorted(ARCHS))}",
        )
    return spec


def _convert(model_dir: Path, out: Path, qtype: str, progress: Progress | None) -> None:
    import gguf

    config = read_config(model_dir)
    spec = arch_spec(config)
    arch = gguf.MODEL_ARCH[spec.gguf_arch]
    names = gguf.get_tensor_name_map(arch, int(config["num_hidden_layers"]))
    tensors = list(_load_tensors(model_dir))
    n_rows = _embedding_rows(tensors)
    vocab = build_vocab(model_dir, n_rows)
    writer = _writer_class()(str(out), gguf.MODEL_ARCH_NAMES[arch])
    _write_metadata(writer, config, spec, qtype, model_dir)
    _write_vocab(writer, vocab)
    total = len(tensors)
    for index, (name, array) in enumerate(tensors):
        gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise GgufError(f"{model_dir}: tensor '{name}' has no GGUF name for {spec.gguf_arch}")
        data = _prepare(name, array, config, spec)
        encoded, raw_type = _encode(data, qtype, gguf_name)
        writer.add_tensor(gguf_name, encoded, raw_dtype=raw_type)
        if progress is not None:
            progress(index + 1, total)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()


def _load_tensors(model_dir: Path) -> Iterator[tuple[str, np.ndarray]]:
    """Every weight as float32 numpy, in file order, read straight from the safetensors."""
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise GgufError(f"{model_dir} has no *.safetensors weights")
    for file in files:
        for key, array in read_safetensors(file):
            if key.endswith(_SKIPPED):
                continue
            name = key.removeprefix("model.language_model.").removeprefix("language_model.")
            if name.startswith(("vision_tower", "multi_modal_projector")):
                continue
            if not name.startswith(("model.", "lm_head")):
                name = f"model.{name}"
            yield name, array


_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}


def read_safetensors(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    """(name, float32 array) for each tensor; memory-mapped, no framework (bf16 widened)."""
    with open(path, "rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(size))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + size)
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(entry["dtype"])
        if dtype is None:
            raise GgufError(f"{path.name}: tensor {name} has unsupported dtype {entry['dtype']}")
        start, end = entry["data_offsets"]
        raw = data[start:end].view(dtype).reshape(entry["shape"])
        if entry["dtype"] == "BF16":
            yield name, (raw.astype(np.uint32) << 16).view(np.float32)
        else:
            yield name, raw.astype(np.float32, copy=False)


def _embedding_rows(tensors: list[tuple[str, np.ndarray]]) -> int:
    for name, array in tensors:
        if name.endswith("embed_tokens.weight"):
            return int(array.shape[0])
    raise GgufError("the model has no token embedding (embed_tokens.weight)")


def _prepare(name: str, array: np.ndarray, config: dict[str, Any], spec: ArchSpec) -> np.ndarray:
    if spec.norm_shift and name.endswith("norm.weight"):
        array = array + np.float32(spec.norm_shift)
    if spec.permute_qk and name.endswith("q_proj.weight"):
        heads = int(config["num_attention_heads"])
        array = _permute(array, heads)
    elif spec.permute_qk and name.endswith("k_proj.weight"):
        heads = int(config.get("num_key_value_heads") or config["num_attention_heads"])
        array = _permute(array, heads)
    return array


def _permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """HF's rotate-half Q/K rows → the interleaved pairs llama.cpp's llama rope expects."""
    rows = weights.shape[0]
    half = rows // heads // 2
    return weights.reshape(heads, 2, half, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def _encode(data: np.ndarray, qtype: str, gguf_name: str) -> tuple[np.ndarray, Any]:
    """Quantize one tensor; 1-D tensors (norms, biases) stay F32 as llama.cpp expects."""
    from gguf import GGMLQuantizationType as Q
    from gguf import quants

    if data.ndim <= 1 or qtype == "f32":
        return np.ascontiguousarray(data, dtype=np.float32), Q.F32
    if qtype == "f16":
        return data.astype(np.float16), Q.F16
    target = Q.BF16 if qtype == "bf16" else Q.Q8_0
    block = quants.GGML_QUANT_SIZES[target][0]
    if data.shape[-1] % block:
        log.debug("%s: row size %d not a multiple of %d; F16", gguf_name, data.shape[-1], block)
        return data.astype(np.float16), Q.F16
    return quants.quantize(data, target), target


def _write_metadata(
    writer: Any, config: dict[str, Any], spec: ArchSpec, qtype: str, model_dir: Path
) -> None:
    import gguf

    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(Path(model_dir).name)
    writer.add_file_type(_file_type(qtype))
    writer.add_block_count(int(config["num_hidden_layers"]))
    writer.add_context_length(int(config.get("max_position_embeddings", 4096)))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(int(config["num_attention_heads"]))
    writer.add_head_count_kv(
        int(config.get("num_key_value_heads") or config["num_attention_heads"])
    )
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
    if config.get("head_dim"):
        writer.add_key_length(int(config["head_dim"]))
        writer.add_value_length(int(config["head_dim"]))
    _write_rope(writer, config)
    if spec.gguf_arch == "GEMMA3":
        _write_gemma(writer, config)


def _write_rope(writer: Any, config: dict[str, Any]) -> None:
    params = config.get("rope_parameters") or config.get("rope_scaling") or {}
    full = params.get("full_attention", params) if isinstance(params, dict) else {}
    theta = full.get("rope_theta", config.get("rope_theta"))
    if theta is not None:
        writer.add_rope_freq_base(float(theta))
    kind = full.get("rope_type") or full.get("type")
    if kind in (None, "default"):
        return
    if kind == "linear" and full.get("factor"):
        import gguf

        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(full["factor"]))
        return
    raise GgufError(f"GGUF export does not support rope scaling '{kind}' yet")


def _write_gemma(writer: Any, config: dict[str, Any]) -> None:
    params = config.get("rope_parameters") or {}
    local = (params.get("sliding_attention") or {}).get("rope_theta")
    local = local or config.get("rope_local_base_freq")
    if local is not None:
        writer.add_rope_freq_base_swa(float(local))
    if config.get("final_logit_softcapping"):
        writer.add_final_logit_softcapping(float(config["final_logit_softcapping"]))
    layer_types = config.get("layer_types")
    if config.get("sliding_window") and layer_types:
        writer.add_sliding_window(int(config["sliding_window"]))
        writer.add_sliding_window_pattern([t == "sliding_attention" for t in layer_types])


def _file_type(qtype: str) -> int:
    import gguf

    return int(
        {
            "f32": gguf.LlamaFileType.ALL_F32,
            "f16": gguf.LlamaFileType.MOSTLY_F16,
            "bf16": gguf.LlamaFileType.MOSTLY_BF16,
            "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
        }[qtype]
    )


def _writer_class() -> type:
    """GGUFWriter with array metadata packed in bulk (it packs item by item: ~10 s per 262k
    vocabulary); numbers go through numpy, strings through one join. Same bytes."""
    import struct

    import gguf

    numeric = {gguf.GGUFValueType.INT32: "<i4", gguf.GGUFValueType.FLOAT32: "<f4"}

    class FastWriter(gguf.GGUFWriter):
        def _pack_val(self, val: Any, vtype: Any, add_vtype: bool, sub_type: Any = None) -> bytes:
            if vtype != gguf.GGUFValueType.ARRAY or not isinstance(val, list) or not val:
                return bytes(super()._pack_val(val, vtype, add_vtype, sub_type))
            ltype = sub_type or gguf.GGUFValueType.get_type(val[0])
            if ltype not in numeric and ltype != gguf.GGUFValueType.STRING:
                return bytes(super()._pack_val(val, vtype, add_vtype, sub_type))
            head = struct.pack("<I", vtype) if add_vtype else b""
            head += struct.pack("<IQ", ltype, len(val))
            if ltype == gguf.GGUFValueType.STRING:
                encoded = [v.encode("utf-8") for v in val]
                return head + b"".join(struct.pack("<Q", len(e)) + e for e in encoded)
            return head + np.asarray(val, dtype=numeric[ltype]).tobytes()

    return FastWriter


def _write_vocab(writer: Any, vocab: GgufVocab) -> None:
    writer.add_tokenizer_model(vocab.model)
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    if vocab.scores is not None:
        writer.add_token_scores(vocab.scores)
    if vocab.merges:
        writer.add_token_merges(vocab.merges)
    for kind, token_id in vocab.special_ids.items():
        getattr(writer, f"add_{kind}_token_id")(token_id)
    writer.add_add_bos_token(vocab.add_bos)
    writer.add_add_eos_token(vocab.add_eos)
    if vocab.add_space_prefix is not None:
        writer.add_add_space_prefix(vocab.add_space_prefix)
    if vocab.chat_template:
        writer.add_chat_template(vocab.chat_template)


def quantize_k(source: Path, out: Path, qtype: str) -> None:
    """A K-quant of an f16 GGUF through llama.cpp's own quantizer (llama-cpp-python)."""
    try:
        import llama_cpp
    except ImportError as e:
        raise GgufError(
            f"GGUF type {qtype} needs llama-cpp-python",
            hint="pip install 'mlx-rsi[gguf]' (or export gguf-f16 / gguf-q8_0)",
        ) from e
    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{qtype.upper()}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = max(1, os.cpu_count() or 1)
    code = llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), params)
    if code != 0:
        raise GgufError(f"llama.cpp could not quantize {source.name} to {qtype} (code {code})")
