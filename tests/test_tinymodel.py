"""The tiny models load in transformers and mlx-lm, agree, and their tokenizer works."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from fixtures_models import *  # noqa: F403  (session fixtures until conftest imports them)

from mlx_rsi.errors import UsageError
from mlx_rsi.tinymodel import build_tiny_model, build_tiny_tokenizer

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "c1", "content": '{"t": 21}'},
    {"role": "assistant", "content": "It is 21 C."},
]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]


def _tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def test_tokenizer_round_trips_text(tiny_tokenizer_dir: Path) -> None:
    tok = _tokenizer(tiny_tokenizer_dir)
    assert 300 < len(tok) <= 512
    text = 'def f(x):\n    return {"a": 1, "é": x}  # naïve 😀\n'
    ids = tok(text, add_special_tokens=False).input_ids
    assert tok.decode(ids) == text
    assert len(ids) < len(text.encode())  # merges were learned
    assert tok.eos_token == "<|im_end|>"
    assert tok.convert_tokens_to_ids("<|im_start|>") != tok.unk_token_id


def test_chat_template_renders_tool_calls_and_results(tiny_tokenizer_dir: Path) -> None:
    tok = _tokenizer(tiny_tokenizer_dir)
    text = tok.apply_chat_template(CHAT, tools=TOOLS, tokenize=False)
    assert text.startswith("<|im_start|>system\nBe brief.\n\nYou can call these tools:\n<tools>\n")
    assert '"name": "get_weather"' in text.split("</tools>")[0]
    assert (
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", '
        '"arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n'
    ) in text
    assert '<|im_start|>tool\n<tool_response>\n{"t": 21}\n</tool_response><|im_end|>\n' in text
    assert text.endswith("<|im_start|>assistant\nIt is 21 C.<|im_end|>\n")
    prompt = tok.apply_chat_template(CHAT[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n")
    ids = tok(text, add_special_tokens=False).input_ids
    assert ids.count(tok.convert_tokens_to_ids("<|im_end|>")) == 5
    assert tok.decode(ids) == text


def test_no_chat_template_variant(tiny_llama_nochat_dir: Path) -> None:
    tok = _tokenizer(tiny_llama_nochat_dir)
    assert not tok.chat_template
    assert tok.eos_token == "<|endoftext|>"


def test_build_is_deterministic(tmp_path: Path) -> None:
    a = build_tiny_model(tmp_path / "a", seed=3)
    b = build_tiny_model(tmp_path / "b", seed=3)
    c = build_tiny_model(tmp_path / "c", seed=4)

    def digest(path: Path, name: str) -> str:
        return hashlib.sha256((path / name).read_bytes()).hexdigest()

    assert digest(a, "model.safetensors") == digest(b, "model.safetensors")
    assert digest(a, "model.safetensors") != digest(c, "model.safetensors")
    assert digest(a, "tokenizer.json") == digest(c, "tokenizer.json")
    # Rebuilding in place replaces the folder whole.
    build_tiny_tokenizer(a)
    assert not (a / "model.safetensors").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_unknown_arch_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown tiny-model arch 'gpt2'"):
        build_tiny_model(tmp_path / "x", arch="gpt2")


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_qwen2_dir", "tiny_gemma_dir"])
def test_transformers_and_mlx_lm_agree(fixture: str, request: pytest.FixtureRequest) -> None:
    mx = pytest.importorskip("mlx.core")
    mlx_lm = pytest.importorskip("mlx_lm")
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    model_dir: Path = request.getfixturevalue(fixture)
    config = json.loads((model_dir / "config.json").read_text())
    assert config["num_hidden_layers"] == 2 and config["hidden_size"] == 64
    hf_model = AutoModelForCausalLM.from_pretrained(model_dir)
    mlx_model, mlx_tok = mlx_lm.load(str(model_dir))
    hf_tok = _tokenizer(model_dir)
    text = hf_tok.apply_chat_template(CHAT, tools=TOOLS, tokenize=False)
    ids = hf_tok(text, add_special_tokens=False).input_ids
    assert mlx_tok.encode(text, add_special_tokens=False) == ids
    with torch.no_grad():
        hf_logits = hf_model(torch.tensor([ids])).logits[0].numpy()
    mlx_logits = np.array(mlx_model(mx.array([ids]))[0].astype(mx.float32))
    assert hf_logits.shape == (len(ids), config["vocab_size"])
    assert np.abs(hf_logits - mlx_logits).max() < 1e-3
    assert np.abs(hf_logits).max() > 1e-2  # not a degenerate all-zero model
