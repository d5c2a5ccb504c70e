"""The PEFT backend: transformers + peft LoRA/DoRA on CUDA (bf16) or the CPU.

Training lives in ``backends.peft_train`` (Accelerate inside, so the same code runs as a
plain process, under ``torchrun --nproc_per_node N`` on CPUs, or ``accelerate launch`` on
GPUs: see ``backends.peft_run``); the model side in ``backends.torch_model``; chat
rendering and masks in ``backends.chat`` (shared with the MLX backend).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from backends.adapter_settings import read_settings
from backends.base import OnEvent, Precision, TrainResult, TrainSpec, backend_status
from backends.chat import (
    apply_trained_template,
    cut_at_stop,
    encode_dataset,
    load_tokenizer,
    read_jsonl,
    render_prompt,
    resolve_template,
    stop_strings,
)
from mlx_rsi import atomic
from mlx_rsi.errors import DatasetError, ModelError

log = logging.getLogger(__name__)

# 27 eval prompts x 64 new tokens on the 270M model, 2 CPU cores: 44 s in batches of 8,
# 19 s in one of 32 (each decode step is one pass whatever the batch; the KV cache is small).
GENERATE_BATCH = 32
EVAL_BATCH = 4


class PeftBackend:
    """``Backend`` implemented with transformers + peft + accelerate.

    ``peft_train`` and ``torch_model`` import torch: they are imported inside the methods
    so that choosing or listing backends (``doctor``, ``--help``) stays torch-free.
    """

    name = "peft"

    def __init__(self, precision: Precision = "auto") -> None:
        # Precision of generate/loss (train takes it from the spec; chat settings come from
        # the adapter: backends.adapter_settings).
        self.precision = precision

    def available(self) -> tuple[bool, str]:
        return backend_status("peft")

    def train(
        self, spec: TrainSpec, dataset_dir: Path, out_dir: Path, on_event: OnEvent
    ) -> TrainResult:
        from backends import peft_train

        return peft_train.train(spec, Path(dataset_dir), Path(out_dir), on_event)

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
        import torch

        model, tokenizer, plan = self._load(model_dir, adapter_dir)
        trained = read_settings(adapter_dir, fallback_template)
        fallback = trained.fallback_template
        name = resolve_template(tokenizer, trained.chat_template(template), fallback)
        texts = [
            render_prompt(tokenizer, messages, template=name, fallback=fallback)
            for messages in prompts
        ]
        stops = stop_strings(tokenizer, template=name, fallback=fallback)
        eos_ids = _stop_token_ids(tokenizer, model, stops)
        tokenizer.padding_side = "left"
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
        outputs: list[str] = []
        for start in range(0, len(texts), GENERATE_BATCH):
            chunk = texts[start : start + GENERATE_BATCH]
            enc = tokenizer(chunk, add_special_tokens=False, return_tensors="pt", padding=True)
            enc = {k: v.to(plan.device) for k, v in enc.items()}
            sampling: dict[str, Any] = (
                {"do_sample": True, "temperature": temperature}
                if temperature > 0
                else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
            )
            with torch.no_grad(), plan.autocast():
                out = model.generate(
                    **enc,
                    max_new_tokens=max_tokens,
                    eos_token_id=eos_ids,
                    pad_token_id=pad_id,
                    **sampling,
                )
            new = out[:, enc["input_ids"].shape[1] :]
            for row in new.tolist():
                ended = next((i for i, t in enumerate(row) if t in eos_ids), len(row))
                text = tokenizer.decode(row[:ended], skip_special_tokens=True)
                outputs.append(cut_at_stop(text, stops))
        return outputs

    def loss(
        self,
        model_dir: Path,
        adapter_dir: Path | None,
        split_path: Path,
        *,
        template: str = "auto",
        fallback_template: str | None = None,
    ) -> float:
        from backends import peft_train, torch_model

        model, tokenizer, plan = self._load(model_dir, adapter_dir)
        trained = read_settings(adapter_dir, fallback_template)
        encoded = encode_dataset(
            tokenizer,
            read_jsonl(Path(split_path)),
            template=trained.chat_template(template),
            fallback=trained.fallback_template,
            cutoff_len=trained.cutoff_len,
            train_on=trained.train_on,
        )
        examples = [e for e in encoded.examples if sum(e.mask[1:]) > 0]
        if not examples:
            raise DatasetError(
                f"{split_path} has no assistant token to score",
                hint="check the split's chat format (every example needs an assistant turn)",
            )
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        module = torch_model.MaskedLMLoss(model)
        return peft_train.evaluate(module, examples, EVAL_BATCH, plan, int(pad_id))

    def fuse(self, model_dir: Path, adapter_dir: Path, out_dir: Path) -> Path:
        import torch

        from backends import torch_model

        plan = torch_model.PrecisionPlan(torch.device("cpu"), _saved_dtype(model_dir), None)
        base = torch_model.load_model(Path(model_dir), plan)
        merged = torch_model.load_adapter(base, Path(adapter_dir)).merge_and_unload()
        merged.config.use_cache = True
        tokenizer = load_tokenizer(Path(model_dir))
        trained = read_settings(Path(adapter_dir))
        apply_trained_template(tokenizer, trained.template, trained.fallback_template)
        out_dir = Path(out_dir)
        with atomic.staged_dir(out_dir, replace=True) as tmp, torch_model.quiet():
            merged.save_pretrained(str(tmp))
            tokenizer.save_pretrained(str(tmp))
        return out_dir

    def _load(self, model_dir: Path, adapter_dir: Path | None) -> tuple[Any, Any, Any]:
        import torch

        from backends import torch_model

        plan = torch_model.resolve_precision(self.precision)
        model = torch_model.load_model(Path(model_dir), plan)
        if adapter_dir is not None:
            model = torch_model.load_adapter(model, Path(adapter_dir))
            if plan.weight_dtype == torch.float32:
                # Merged in fp32, as `fuse` merges an fp32 base: the candidate is judged on
                # the weights it would be promoted with, at the base model's speed (27 eval
                # prompts, 270M model: 35 s with the adapter beside the weights, ~19 merged).
                model = model.merge_and_unload()
        model.eval()
        return model, load_tokenizer(Path(model_dir)), plan


def _saved_dtype(model_dir: Path) -> Any:
    """The dtype the base model's weights were saved in (fp32 when unknown)."""
    import torch

    try:
        config = json.loads((Path(model_dir) / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read {model_dir}/config.json: {e}") from e
    name = config.get("dtype") or config.get("torch_dtype") or "float32"
    dtype = getattr(torch, str(name), torch.float32)
    return dtype if isinstance(dtype, torch.dtype) else torch.float32


def _stop_token_ids(tokenizer: Any, model: Any, stops: Sequence[str]) -> list[int]:
    """Token ids that end generation: EOS ids plus single-token stop strings."""
    ids: list[int] = []
    configured = getattr(model.generation_config, "eos_token_id", None)
    for value in [tokenizer.eos_token_id, configured]:
        ids.extend(value if isinstance(value, list) else [value] if value is not None else [])
    for text in stops:
        encoded = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(encoded) == 1:
            ids.append(encoded[0])
    return list(dict.fromkeys(ids))


BACKEND = PeftBackend()
