"""Session-scoped tiny real models (random weights, tokenizer trained in-test).

``tests/conftest.py`` does ``from fixtures_models import *``; each folder is built once per
test session under ``tmp_path_factory`` and must be treated as read-only by tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlx_rsi.tinymodel import build_tiny_model, build_tiny_tokenizer

__all__ = [
    "tiny_gemma_dir",
    "tiny_llama_dir",
    "tiny_llama_nochat_dir",
    "tiny_qwen2_dir",
    "tiny_tokenizer_dir",
]


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ChatML byte-level BPE tokenizer (HF layout)."""
    _offline()
    return build_tiny_tokenizer(tmp_path_factory.mktemp("tiny-tokenizer") / "tok")


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny llama (2 layers, hidden 64) with the ChatML template."""
    _offline()
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama") / "model", arch="llama")


@pytest.fixture(scope="session")
def tiny_llama_nochat_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny llama whose tokenizer has no chat template (like the real gemma base model)."""
    _offline()
    return build_tiny_model(
        tmp_path_factory.mktemp("tiny-llama-nochat") / "model", arch="llama", chat_template=False
    )


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _offline()
    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2") / "model", arch="qwen2")


@pytest.fixture(scope="session")
def tiny_gemma_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny gemma3_text (tied embeddings, sliding + full attention layers)."""
    _offline()
    return build_tiny_model(tmp_path_factory.mktemp("tiny-gemma") / "model", arch="gemma3_text")
