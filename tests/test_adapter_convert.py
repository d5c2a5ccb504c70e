"""Adapters convert between mlx-lm's and PEFT's layouts with the same logits on both sides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("mlx.core")
pytest.importorskip("peft")

import mlx.core as mx
import torch

from backends import convert, mlx_model
from backends.base import TrainSpec
from backends.mlx_lora import BACKEND
from mlx_rsi.errors import ModelError, UsageError

IDS = [3, 17, 42, 99, 7, 250, 11, 64, 128, 5]


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"Add {i} and {i + 1}."},
                {"role": "assistant", "content": f"The answer is {2 * i + 1}."},
            ]
        }
        for i in range(8)
    ]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def _mlx_logits(model_dir: Path, adapter_dir: Path) -> np.ndarray:
    loaded, _ = mlx_model.load_with_adapter(model_dir, adapter_dir)
    return np.array(loaded.model(mx.array([IDS])))[0]


def _peft_logits(model_dir: Path, adapter_dir: Path) -> np.ndarray:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(model_dir))
    model = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
    with torch.no_grad():
        return model(torch.tensor([IDS])).logits[0].numpy()


def _base_logits(model_dir: Path) -> np.ndarray:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    with torch.no_grad():
        return model(torch.tensor([IDS])).logits[0].numpy()


def _peft_adapter(model_dir: Path, out: Path, **config: Any) -> Path:
    """A PEFT adapter made with peft itself, with random (non-zero) A and B."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(str(model_dir))
    settings: dict[str, Any] = {"r": 4, "lora_alpha": 8, "init_lora_weights": False}
    settings.update(config)
    model = get_peft_model(base, LoraConfig(task_type="CAUSAL_LM", **settings))
    model.save_pretrained(str(out))
    return out


@pytest.mark.parametrize("dora", [False, True], ids=["lora", "dora"])
def test_mlx_trained_adapter_gives_the_same_logits_under_peft(
    tiny_llama_dir: Path,
    dataset: Path,
    tmp_path: Path,
    dora: bool,
) -> None:
    spec = TrainSpec(
        model_dir=tiny_llama_dir, rank=4, alpha=8, learning_rate=2e-2, max_steps=3,
        batch_size=2, grad_accum=1, use_dora=dora, num_layers=1,
    )  # fmt: skip
    result = BACKEND.train(spec, dataset, tmp_path / "run", lambda _: None)
    peft_dir = convert.convert_adapter(
        result.adapter_dir, tmp_path / "peft", to="peft", base_model_dir=tiny_llama_dir
    )
    assert (peft_dir / "chat_template_used.json").read_text() == (
        result.adapter_dir / "chat_template_used.json"
    ).read_text()
    config = json.loads((peft_dir / "adapter_config.json").read_text())
    assert config["layers_to_transform"] == [1] and config["use_dora"] is dora

    expected = _mlx_logits(tiny_llama_dir, result.adapter_dir)
    assert not np.allclose(expected, _base_logits(tiny_llama_dir), atol=1e-3)
    np.testing.assert_allclose(_peft_logits(tiny_llama_dir, peft_dir), expected, atol=2e-4)

    # And back: the round trip gives the original tensors.
    back = convert.convert_adapter(
        peft_dir, tmp_path / "back", to="mlx", base_model_dir=tiny_llama_dir
    )
    original = mlx_model.load_tensors(result.adapter_dir / "adapters.safetensors")
    again = mlx_model.load_tensors(back / "adapters.safetensors")
    assert set(original) == set(again)
    assert all(np.allclose(np.array(original[k]), np.array(again[k])) for k in original)


@pytest.mark.parametrize(
    "config",
    [
        {"target_modules": ["q_proj", "v_proj"], "layers_to_transform": [0]},
        {"target_modules": "all-linear", "use_rslora": True},
        {"target_modules": ["q_proj", "down_proj"], "use_dora": True},
    ],
    ids=["sparse-layers", "rslora-all-linear", "dora"],
)
def test_peft_adapter_gives_the_same_logits_under_mlx(
    tiny_llama_dir: Path,
    tmp_path: Path,
    config: dict[str, Any],
) -> None:
    from mlx_lm import load

    peft_dir = _peft_adapter(tiny_llama_dir, tmp_path / "peft", **config)
    mlx_dir = convert.convert_adapter(
        peft_dir, tmp_path / "mlx", to="mlx", base_model_dir=tiny_llama_dir
    )
    expected = _peft_logits(tiny_llama_dir, peft_dir)
    assert not np.allclose(expected, _base_logits(tiny_llama_dir), atol=1e-3)
    np.testing.assert_allclose(_mlx_logits(tiny_llama_dir, mlx_dir), expected, atol=2e-4)
    model = load(str(tiny_llama_dir), adapter_path=str(mlx_dir))[0]
    np.testing.assert_allclose(np.array(model(mx.array([IDS])))[0], expected, atol=2e-4)


def test_unsupported_or_mismatched_adapters_are_refused(
    tiny_llama_dir: Path,
    tmp_path: Path,
) -> None:
    peft_dir = _peft_adapter(
        tiny_llama_dir, tmp_path / "peft", target_modules=["q_proj"], modules_to_save=["lm_head"]
    )
    with pytest.raises(ModelError, match="modules_to_save"):
        convert.convert_adapter(peft_dir, tmp_path / "x", to="mlx", base_model_dir=tiny_llama_dir)
    with pytest.raises(UsageError, match="already a peft adapter"):
        convert.convert_adapter(peft_dir, tmp_path / "y", to="peft", base_model_dir=tiny_llama_dir)

    plain = _peft_adapter(tiny_llama_dir, tmp_path / "plain", target_modules=["q_proj"])
    weights = plain / "adapter_model.safetensors"
    tensors = convert.read_tensors(weights)
    renamed = {k.replace("q_proj", "qq_proj"): v for k, v in tensors.items()}
    from safetensors.numpy import save_file

    save_file(renamed, str(weights))
    with pytest.raises(ModelError, match="does not fit the base model"):
        convert.convert_adapter(plain, tmp_path / "z", to="mlx", base_model_dir=tiny_llama_dir)
    assert not (tmp_path / "z").exists()


def test_cli_converts_a_peft_adapter_for_mlx(cli, tiny_llama_dir: Path, tmp_path: Path) -> None:
    src = _peft_adapter(tiny_llama_dir, tmp_path / "peft", target_modules="all-linear")
    dst = tmp_path / "mlx"
    result = cli(
        "adapter", "convert", str(src), str(dst), "--to", "mlx", "--base", str(tiny_llama_dir)
    )
    assert result.exit_code == 0, result.output
    assert f"adapter converted to mlx: {dst}" in result.output
    np.testing.assert_allclose(
        _mlx_logits(tiny_llama_dir, dst), _peft_logits(tiny_llama_dir, src), atol=2e-4
    )
    # An existing destination is kept unless --force.
    again = cli(
        "adapter", "convert", str(src), str(dst), "--to", "mlx", "--base", str(tiny_llama_dir)
    )
    assert again.exit_code == 2 and "--force" in again.output


def test_cli_rejects_a_folder_without_an_adapter(cli, tiny_llama_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _out, err = cli.main(
        "adapter", "convert", str(empty), str(tmp_path / "x"), "--to", "peft",
        "--base", str(tiny_llama_dir),
    )  # fmt: skip
    assert code == 1
    assert "holds neither adapters.safetensors (MLX) nor adapter_model.safetensors (PEFT)" in err
    assert "Traceback" not in err and not (tmp_path / "x").exists()
