"""Model side of the PEFT backend: precision, loading, LoRA targets and the masked loss.

The loss applies the output head only at the positions whose next token is trained: on
the real 270M base model 168M of the 268M parameters are the head, and skipping the
prompt positions is 1.44x faster on this CPU (FACTS.md). On the CPU the weights stay fp32
and ``precision: bf16`` (or ``auto``) runs the matmuls under bf16 autocast (1.64x; same
loss to 3 decimals); on CUDA the frozen base is loaded in bf16 and the adapter stays fp32.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from backends.base import TrainSpec
from backends.cpu_dropout import use_cpu_dropout
from backends.head_loss import frozen_head_loss
from mlx_rsi.errors import BackendUnavailableError, ModelError, UsageError

log = logging.getLogger(__name__)

_BLOCK = re.compile(r"^(?P<prefix>.+)\.(?P<index>\d+)$")


@dataclass(frozen=True)
class PrecisionPlan:
    """Where the model runs, the dtype its frozen weights load in, and the autocast dtype."""

    device: torch.device
    weight_dtype: torch.dtype
    autocast_dtype: torch.dtype | None

    @property
    def needs_loss_scaling(self) -> bool:
        """fp16 gradients underflow without a GradScaler (bf16 and fp32 do not)."""
        return self.autocast_dtype == torch.float16

    @property
    def frozen_dtype(self) -> torch.dtype | None:
        """The dtype to store frozen weights in during CPU autocast training (else None)."""
        if self.device.type == "cpu" and self.autocast_dtype is not None:
            return self.autocast_dtype
        return None

    @contextmanager
    def autocast(self) -> Iterator[None]:
        if self.autocast_dtype is None:
            yield
            return
        with torch.autocast(self.device.type, dtype=self.autocast_dtype):
            yield


@contextmanager
def quiet() -> Iterator[None]:
    """No HF progress bars (backends report through events) and no deprecation noise."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
            yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def resolve_precision(precision: str, device: torch.device | None = None) -> PrecisionPlan:
    """``auto``: bf16 on CUDA (fp16 + loss scaling before Ampere); CPU: fp32 + bf16 autocast."""
    if device is None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        if precision == "fp32":
            return PrecisionPlan(device, torch.float32, None)
        half = torch.float16 if precision == "fp16" else torch.bfloat16
        if precision == "auto" and not torch.cuda.is_bf16_supported():
            half = torch.float16  # pre-Ampere GPUs (T4, V100): fp16 with loss scaling
        return PrecisionPlan(device, half, half)
    if precision == "fp16":
        raise UsageError(
            "precision fp16 needs a CUDA GPU", hint="use bf16 (autocast) or fp32 on the CPU"
        )
    autocast = torch.bfloat16 if precision in ("auto", "bf16") else None
    return PrecisionPlan(device, torch.float32, autocast)


def load_model(model_dir: Path, plan: PrecisionPlan, *, quantize_bits: int | None = None) -> Any:
    """The HF causal LM in ``model_dir`` on ``plan.device`` (frozen weights in its dtype)."""
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": plan.weight_dtype}
    if quantize_bits:
        kwargs["quantization_config"] = _bnb_config(quantize_bits, plan)
        kwargs["device_map"] = {"": plan.device.index or 0}
    try:
        with quiet():
            model: Any = AutoModelForCausalLM.from_pretrained(str(model_dir), **kwargs)
    except (OSError, ValueError, KeyError) as e:
        raise ModelError(
            f"cannot load a causal LM from {model_dir}: {e}",
            hint="point model_dir at an HF-layout folder (config.json + safetensors)",
        ) from e
    if not quantize_bits:
        model.to(plan.device)
    model.config.use_cache = False
    return model


def _bnb_config(bits: int, plan: PrecisionPlan) -> Any:
    if plan.device.type != "cuda":
        raise BackendUnavailableError(
            f"quantize_bits={bits} (QLoRA) needs a CUDA GPU with the PEFT backend",
            hint="drop quantize_bits, or train with the MLX backend on a Mac",
        )
    try:
        from transformers import BitsAndBytesConfig
    except ImportError as e:  # pragma: no cover - transformers always has it
        raise BackendUnavailableError("transformers lacks BitsAndBytesConfig") from e
    if bits not in (4, 8):
        raise UsageError(f"quantize_bits={bits} is not supported", hint="use 4 or 8")
    return BitsAndBytesConfig(
        load_in_4bit=bits == 4,
        load_in_8bit=bits == 8,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=plan.autocast_dtype or torch.float32,
    )


def transformer_blocks(model: nn.Module) -> tuple[str, int]:
    """Name of the ModuleList of transformer blocks (e.g. ``model.layers``) and its length."""
    candidates = [
        (name.count("."), -len(module), name)
        for name, module in model.named_modules()
        if isinstance(module, nn.ModuleList)
        and len(module) > 0
        and any(isinstance(m, nn.Linear) for m in module[0].modules())
    ]
    if not candidates:
        raise ModelError("cannot find the transformer blocks of this model (no ModuleList)")
    _, negative_count, name = min(candidates)
    return name, -negative_count


def target_module_names(
    model: nn.Module, targets: tuple[str, ...], num_layers: int | None
) -> list[str]:
    """Full names of the linear layers to adapt: in the last ``num_layers`` blocks only."""
    prefix, count = transformer_blocks(model)
    first = 0 if num_layers is None else max(0, count - num_layers)
    wanted = None if targets == ("all",) else set(targets)
    names: list[str] = []
    leaves: set[str] = set()
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or not name.startswith(prefix + "."):
            continue
        index = int(name[len(prefix) + 1 :].split(".")[0])
        leaf = name.rsplit(".", 1)[-1]
        leaves.add(leaf)
        if index >= first and (wanted is None or leaf in wanted):
            names.append(name)
    missing = sorted((wanted or set()) - leaves)
    if missing:
        raise UsageError(
            f"target_modules {', '.join(missing)} not found in the model's blocks",
            hint=f"use 'all' or some of {', '.join(sorted(leaves))}",
        )
    return names


def add_lora(model: Any, spec: TrainSpec) -> Any:
    """Wrap ``model`` with a fresh LoRA (or DoRA) adapter as the spec asks."""
    from peft import LoraConfig, get_peft_model

    names = target_module_names(model, spec.target_modules, spec.num_layers)
    config = LoraConfig(
        r=spec.rank,
        lora_alpha=_alpha(spec.alpha),
        lora_dropout=spec.dropout,
        target_modules=names,
        use_dora=spec.use_dora,
        bias="none",
        task_type="CAUSAL_LM",
    )
    if spec.quantize_bits:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=spec.gradient_checkpointing
        )
    if spec.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    with quiet():
        peft_model = get_peft_model(model, config)
    use_cpu_dropout(peft_model)
    return peft_model


def _alpha(alpha: float) -> Any:
    """peft types lora_alpha as int; keep fractional values (scaling is alpha / r)."""
    return int(alpha) if float(alpha).is_integer() else alpha


def load_adapter(model: Any, adapter_dir: Path, *, trainable: bool = False) -> Any:
    """``model`` with the PEFT adapter saved in ``adapter_dir``."""
    from peft import PeftModel

    if not (Path(adapter_dir) / "adapter_config.json").is_file():
        raise ModelError(
            f"no PEFT adapter in {adapter_dir} (adapter_config.json missing)",
            hint="pass the adapter/ folder of a finished run",
        )
    try:
        with quiet():
            return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=trainable)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ModelError(
            f"cannot load the adapter in {adapter_dir} onto this model: {e}",
            hint="was it trained on this base model?",
        ) from e


def load_adapter_weights(model: Any, adapter_dir: Path) -> None:
    """Start a LoRA model from a saved adapter's weights (a warm start).

    Every LoRA tensor of ``model`` must come from the file with the same shape: an
    adapter of other settings (rank, targets, layers) is refused, not half-loaded.
    """
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    path = Path(adapter_dir) / "adapter_model.safetensors"
    if not path.is_file():
        raise ModelError(
            f"no PEFT adapter weights in {adapter_dir} (adapter_model.safetensors missing)",
            hint="pass the adapter/ folder of a finished PEFT run",
        )
    try:
        result: Any = set_peft_model_state_dict(model, load_file(str(path)))
    except RuntimeError as e:  # a shape mismatch
        raise ModelError(
            f"the adapter in {adapter_dir} does not fit this run's LoRA settings: {e}",
            hint="warm starts need the same base model, rank, targets and layers",
        ) from e
    missing = [k for k in result.missing_keys if "lora_" in k]
    if missing or result.unexpected_keys:
        raise ModelError(
            f"the adapter in {adapter_dir} does not fit this run's LoRA settings "
            f"({len(missing)} missing, {len(result.unexpected_keys)} unexpected tensor(s))",
            hint="warm starts need the same base model, rank, targets and layers",
        )


def _causal_lm(model: nn.Module) -> Any:
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def store_frozen_in(model: Any, dtype: torch.dtype) -> torch.dtype | None:
    """Keep frozen linear weights in ``dtype`` (the autocast dtype): no per-step casts.

    Under autocast every matmul reads its weights in ``dtype`` anyway, so the numbers do
    not change; the trainable adapter, embeddings and norms stay fp32. A head tied to
    the input embedding is left alone (the embedding must stay fp32): ``MaskedLMLoss``
    keeps a ``dtype`` copy of it instead. Returns the head dtype for ``MaskedLMLoss``.
    """
    causal = _causal_lm(model)
    head = causal.get_output_embeddings()
    tied = head is not None and head.weight is causal.get_input_embeddings().weight
    for module in model.modules():
        if not isinstance(module, nn.Linear) or (tied and module is head):
            continue
        if not any(p.requires_grad for p in module.parameters(recurse=False)):
            module.to(dtype)
    return dtype


class MaskedLMLoss(nn.Module):
    """Sum of next-token cross-entropy over the trained positions only.

    The decoder runs over every token; the output head (and gemma's final logit
    soft-capping, when the config has it) only over the rows in ``positions``.
    Wrapping this module (not the bare model) in DDP keeps the gradient hooks right.
    With ``head_dtype`` the head runs from a frozen copy of its weight in that dtype
    (a plain attribute, so DDP never broadcasts it).
    """

    def __init__(self, model: nn.Module, head_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.model = model
        causal = _causal_lm(model)
        self.softcap = getattr(causal.config, "final_logit_softcapping", None)
        self.head_weight: torch.Tensor | None = None
        if head_dtype is not None:
            weight = causal.get_output_embeddings().weight
            self.head_weight = weight.detach().to(head_dtype)

    def forward(self, input_ids: Any, positions: Any, targets: Any) -> Any:
        causal = _causal_lm(self.model)
        hidden = causal.get_decoder()(input_ids=input_ids, use_cache=False).last_hidden_state
        rows = hidden.reshape(-1, hidden.shape[-1]).index_select(0, positions)
        head = causal.get_output_embeddings()
        weight = self.head_weight if self.head_weight is not None else head.weight
        if _plain_frozen(head, weight):
            return frozen_head_loss(rows, weight, targets, self.softcap)
        if self.head_weight is not None:
            logits = nn.functional.linear(rows.to(self.head_weight.dtype), self.head_weight)
        else:
            logits = head(rows)
        logits = logits.float()
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return nn.functional.cross_entropy(logits, targets, reduction="sum")


def _plain_frozen(head: nn.Module, weight: torch.Tensor) -> bool:
    """A bias-free head with a frozen floating-point weight (not a trained or quantized one)."""
    return (
        type(head) is nn.Linear
        and head.bias is None
        and not weight.requires_grad
        and weight.dtype.is_floating_point
    )
