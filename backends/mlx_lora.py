"""The MLX backend: LoRA / DoRA / QLoRA with mlx-lm's tuner API (Apple silicon; CPU for tests).

Importing this module imports mlx; ``backends.base.get_backend("mlx")`` does so only
when MLX is chosen. The pieces live in ``mlx_model`` (base, quantization, adapter
files), ``mlx_data`` (batches), ``mlx_train`` (the loop) and ``mlx_checkpoint``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlx.core as mx
from mlx.utils import tree_unflatten

from backends import base, chat, mlx_data, mlx_model, mlx_train
from backends.adapter_settings import read_settings
from backends.base import OnEvent, TrainResult, TrainSpec
from mlx_rsi import atomic
from mlx_rsi.errors import DatasetError

EVAL_BATCH_SIZE = 8
HF_SIDE_FILES = ("generation_config.json",)


class MlxBackend:
    """LoRA training, generation, loss and fusing with MLX (see ``backends.base.Backend``)."""

    name = "mlx"

    def available(self) -> tuple[bool, str]:
        return base.backend_status("mlx")

    def train(
        self, spec: TrainSpec, dataset_dir: Path, out_dir: Path, on_event: OnEvent
    ) -> TrainResult:
        return mlx_train.train(spec, dataset_dir, out_dir, on_event)

    def generate(
        self,
        model_dir: Path,
        adapter_dir: Path | None,
        prompts: list[list[dict[str, Any]]],
        *,
        max_tokens: int = 128,
        temperature: float = 0.0,
        template: str = "auto",
        fallback_template: str | None = None,
    ) -> list[str]:
        """Complete each chat with mlx-lm's generator (greedy at temperature 0)."""
        from mlx_lm.generate import generate
        from mlx_lm.sample_utils import make_sampler

        loaded, _ = mlx_model.load_with_adapter(model_dir, adapter_dir)
        tokenizer = loaded.hf_tokenizer
        trained = read_settings(adapter_dir, fallback_template)
        template, fallback = trained.chat_template(template), trained.fallback_template
        stops = chat.stop_strings(tokenizer, template=template, fallback=fallback)
        sampler = make_sampler(temp=temperature)
        texts = []
        for messages in prompts:
            prompt = chat.render_prompt(tokenizer, messages, template=template, fallback=fallback)
            ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            text = generate(
                loaded.model, loaded.tokenizer, ids, max_tokens=max_tokens, sampler=sampler
            )
            texts.append(chat.cut_at_stop(text, stops))
        return texts

    def loss(
        self,
        model_dir: Path,
        adapter_dir: Path | None,
        split_path: Path,
        *,
        template: str = "auto",
        fallback_template: str | None = None,
    ) -> float:
        """Mean cross-entropy per trained (assistant) token, masked exactly as in training."""
        loaded, _ = mlx_model.load_with_adapter(model_dir, adapter_dir)
        trained = read_settings(adapter_dir, fallback_template)
        examples, _ = mlx_data.encode_split(
            loaded.hf_tokenizer,
            Path(split_path),
            template=trained.chat_template(template),
            fallback=trained.fallback_template,
            cutoff_len=trained.cutoff_len,
            train_on=trained.train_on,
        )
        if not examples:
            raise DatasetError(
                f"{split_path}: no example has a trained assistant token",
                hint="check the split holds chats with assistant turns",
            )
        return mlx_train.evaluate(loaded.model, examples, EVAL_BATCH_SIZE)

    def fuse(self, model_dir: Path, adapter_dir: Path, out_dir: Path) -> Path:
        """Merge the adapter (dequantizing a QLoRA base) and save an HF-layout model."""
        from mlx_lm.utils import dequantize_model, save_config, save_model

        loaded, _ = mlx_model.load_with_adapter(model_dir, adapter_dir)
        # A fused model formats chats as in training (serving, GGUF, ``template: auto``).
        trained = read_settings(adapter_dir)
        chat.apply_trained_template(
            loaded.hf_tokenizer, trained.template, trained.fallback_template
        )
        model = loaded.model
        fused = [
            (n, m.fuse(dequantize=True)) for n, m in model.named_modules() if hasattr(m, "fuse")
        ]
        if fused:
            model.update_modules(tree_unflatten(fused))
        model = dequantize_model(model)
        mx.eval(model.parameters())
        model_config = dict(loaded.config)
        for key in ("quantization", "quantization_config"):
            model_config.pop(key, None)
        out_dir = Path(out_dir)
        with atomic.staged_dir(out_dir, replace=True) as tmp:
            save_model(tmp, model)
            save_config(model_config, config_path=tmp / "config.json")
            loaded.tokenizer.save_pretrained(str(tmp))
            for name in HF_SIDE_FILES:
                source = Path(model_dir) / name
                if source.is_file():
                    (tmp / name).write_bytes(source.read_bytes())
        return out_dir


BACKEND = MlxBackend()
