"""Tiny real models for tests and demos: a BPE tokenizer trained here and random weights.

Nothing is downloaded. ``build_tiny_tokenizer`` trains a byte-level BPE (GPT-2 regex
pre-tokenizer, ~512 tokens) on a small built-in English + code corpus and saves it in HF
layout with a ChatML chat template that renders tools, tool calls and tool results.
``build_tiny_model`` adds a randomly initialised llama / qwen2 / gemma3_text model saved
with ``save_pretrained`` (safetensors), loadable by transformers and by ``mlx_lm.load``.
Both are deterministic for a seed.

This lives in the package, not in ``tests/``: ``make demo`` (``scripts/demo.py``) builds
its base model with it from an installed mlx-rsi, and ``scripts/bench_train.py`` uses it
for the MLX comparison; the tests reach it through ``tests/fixtures_models.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from backends.chat import CHATML_TEMPLATE
from mlx_rsi.errors import UsageError

ARCHS = ("llama", "qwen2", "gemma3_text")
VOCAB_SIZE = 512
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

# ChatML with Hermes-style tools (the tool list in the system turn, calls as
# <tool_call>{json}</tool_call> in the assistant turn, results in a "tool" turn).
CHAT_TEMPLATE = CHATML_TEMPLATE

_CORPUS = """\
The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a
single step. Please read the file, run the tests and report what failed. I fixed the bug in
the parser; the tests pass now. Below is an instruction that describes a task. Write a
response that appropriately completes the request.
### Instruction:
Summarize the changes in this commit.
### Input:
The function returned None when the list was empty.
### Response:
The function now returns an empty list instead of None.
You are a helpful assistant. The user asked for the weather in Paris and London.
The answer is 42. Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000 2024 3.14 -7.
def add(a: int, b: int) -> int:
    \"\"\"Return the sum of a and b.\"\"\"
    return a + b

class Counter:
    def __init__(self) -> None:
        self.count = 0

    def increment(self, step: int = 1) -> int:
        self.count += step
        return self.count

for i in range(10):
    if i % 2 == 0:
        print(f"even {i}")
    else:
        print("odd", i)

import json
data = json.loads('{"name": "get_weather", "arguments": {"city": "Paris"}}')
<tool_call> {"name": "read_file", "arguments": {"path": "src/main.py"}} </tool_call>
<tool_response> {"temperature": 21, "unit": "celsius"} </tool_response>
git commit -m "fix: handle empty input" && pytest -q tests/test_parser.py
Error: file not found. Traceback (most recent call last): ValueError: invalid literal.
"""


def tiny_corpus() -> list[str]:
    """The built-in training text, split into lines (deterministic)."""
    return [line for line in _CORPUS.splitlines() if line.strip()] * 4


def build_tiny_tokenizer(out_dir: Path, *, chat_template: bool = True) -> Path:
    """Train a byte-level BPE on the built-in corpus and save it (HF layout) in ``out_dir``.

    With ``chat_template`` the tokenizer carries the ChatML template and ends turns with
    ``<|im_end|>`` (its EOS); without, it has no template and EOS is ``<|endoftext|>``.
    """
    out_dir = Path(out_dir)
    with _atomic_dir(out_dir) as tmp:
        _save_tokenizer(tmp, chat_template=chat_template)
    return out_dir


def build_tiny_model(
    out_dir: Path, *, arch: str = "llama", seed: int = 0, chat_template: bool = True
) -> Path:
    """A randomly initialised tiny ``arch`` model plus the tiny tokenizer, saved in ``out_dir``."""
    if arch not in ARCHS:
        raise UsageError(f"unknown tiny-model arch '{arch}'", hint=f"use one of {', '.join(ARCHS)}")
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    out_dir = Path(out_dir)
    with _atomic_dir(out_dir) as tmp:
        tokenizer = _save_tokenizer(tmp, chat_template=chat_template)
        config = AutoConfig.for_model(**_config_kwargs(arch, tokenizer))
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        _reinit(model, seed)
        model.generation_config.eos_token_id = config.eos_token_id
        model.generation_config.pad_token_id = config.pad_token_id
        model.generation_config.bos_token_id = config.bos_token_id
        _save_quietly(model, tmp)
        _add_legacy_rope_keys(tmp / "config.json", arch)
    return out_dir


def _save_quietly(model: Any, out_dir: Path) -> None:
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(out_dir)
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _add_legacy_rope_keys(config_path: Path, arch: str) -> None:
    """Write the top-level rope keys mlx-lm reads (transformers 5 nests them)."""
    config = json.loads(config_path.read_text())
    params = config.get("rope_parameters") or {}
    if arch == "gemma3_text":
        config["rope_theta"] = params["full_attention"]["rope_theta"]
        config["rope_local_base_freq"] = params["sliding_attention"]["rope_theta"]
    else:
        config["rope_theta"] = params.get("rope_theta", 10000.0)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _save_tokenizer(out_dir: Path, *, chat_template: bool) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(tiny_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>" if chat_template else "<|endoftext|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        model_max_length=2048,
        clean_up_tokenization_spaces=False,
    )
    if chat_template:
        fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out_dir)
    return fast


def _config_kwargs(arch: str, tokenizer: Any) -> dict[str, Any]:
    common: dict[str, Any] = {
        "model_type": arch,
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-6,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.pad_token_id,
        "tie_word_embeddings": arch == "gemma3_text",
    }
    if arch == "gemma3_text":
        common.update(
            query_pre_attn_scalar=16,
            sliding_window=512,
            layer_types=["sliding_attention", "full_attention"],
            sliding_window_pattern=2,
            final_logit_softcapping=None,  # as in Gemma 3 (mlx-lm ignores it)
        )
    return common


def _reinit(model: Any, seed: int) -> None:
    """Re-draw every weight from a seeded generator so the result never depends on init order."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, param in sorted(model.named_parameters()):
            if param.dim() == 1:
                # Norm weights: gemma stores (1 + w), others w; both fine at their defaults.
                continue
            std = param.shape[-1] ** -0.5  # 1/sqrt(fan_in): a learnable scale
            param.copy_(torch.randn(param.shape, generator=generator) * std)


class _atomic_dir:
    """Build a folder in a sibling temp dir, then move it into place (replacing any old one)."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.tmp = Path()

    def __enter__(self) -> Path:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.", dir=self.target.parent))
        return self.tmp

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        if self.target.exists():
            old = self.target.with_name(f".{self.target.name}.old-{os.getpid()}")
            os.replace(self.target, old)
            os.replace(self.tmp, self.target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.tmp, self.target)


def describe(model_dir: Path) -> dict[str, Any]:
    """The saved config of a tiny model (handy in tests and error messages)."""
    return dict(json.loads((Path(model_dir) / "config.json").read_text()))
