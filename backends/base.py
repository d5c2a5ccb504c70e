"""The Backend protocol, the TrainSpec both backends share, the registry and `auto`.

DESIGN.md: ``auto`` picks MLX on Apple silicon with Metal, PEFT (bf16) where CUDA is
available, and otherwise PEFT on the CPU: MLX's Linux CPU wheel is ~25x slower
than torch there (FACTS.md), so ``auto`` never picks MLX on a Linux CPU.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import platform
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Protocol

from mlx_rsi.errors import BackendUnavailableError, UsageError

Schedule = Literal["cosine", "linear", "constant"]
Precision = Literal["auto", "bf16", "fp16", "fp32"]
EventKind = Literal["start", "step", "eval", "save", "stop", "end"]


@dataclass(frozen=True)
class TrainSpec:
    """Everything a backend needs to train one LoRA adapter; the same for both."""

    model_dir: Path  # HF-layout base model (config.json, safetensors, tokenizer)
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.1
    target_modules: tuple[str, ...] = ("all",)  # "all" = every linear layer of the blocks
    num_layers: int | None = None  # train only the last N blocks; None = all
    use_dora: bool = False
    quantize_bits: int | None = None  # QLoRA: quantize the frozen base (MLX: 4 or 8)
    learning_rate: float = 1e-5
    schedule: Schedule = "cosine"
    warmup_ratio: float = 0.1
    epochs: float | None = 1.0  # used when max_steps is None
    max_steps: int | None = None
    batch_size: int = 2
    grad_accum: int = 4
    cutoff_len: int = 2048
    seed: int = 0
    save_steps: int = 50
    eval_steps: int | None = None  # None = evaluate at each save
    logging_steps: int = 10
    gradient_checkpointing: bool = False
    precision: Precision = "auto"  # bf16 on CUDA; CPU: fp32 weights (bf16 = autocast)
    template: str = "auto"  # "auto" = the tokenizer's chat template, else the fallback
    fallback_template: str = "alpaca"
    train_on: Literal["assistant", "last_assistant"] = "assistant"
    early_stopping_patience: int | None = None  # evals without improvement; None = off
    resume: bool = False
    init_adapter: Path | None = None  # warm start: begin from this adapter (same settings)

    def total_steps(self, num_train_examples: int) -> int:
        """Optimizer steps for this spec (max_steps wins over epochs)."""
        if self.max_steps is not None:
            return self.max_steps
        per_step = self.batch_size * self.grad_accum
        steps_per_epoch = max(1, -(-num_train_examples // per_step))
        return max(1, round(steps_per_epoch * (self.epochs or 1.0)))


def spec_to_dict(spec: TrainSpec) -> dict[str, Any]:
    """A TrainSpec as plain JSON values (for launch files and run records)."""
    record = asdict(spec)
    record["model_dir"] = str(spec.model_dir)
    record["target_modules"] = list(spec.target_modules)
    record["init_adapter"] = str(spec.init_adapter) if spec.init_adapter else None
    return record


def spec_from_dict(raw: dict[str, Any], where: str = "TrainSpec") -> TrainSpec:
    """The inverse of :func:`spec_to_dict`; unknown fields are an error naming ``where``."""
    known = {f.name for f in fields(TrainSpec)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise UsageError(f"{where}: unknown TrainSpec field(s) {', '.join(unknown)}")
    values = dict(raw)
    values["model_dir"] = Path(values["model_dir"])
    if "target_modules" in values:
        values["target_modules"] = tuple(values["target_modules"])
    if values.get("init_adapter"):
        values["init_adapter"] = Path(values["init_adapter"])
    return TrainSpec(**values)


@dataclass
class TrainEvent:
    """Progress reported by a backend through ``on_event``; the UI renders it."""

    kind: EventKind
    step: int = 0
    total_steps: int = 0
    loss: float | None = None
    val_loss: float | None = None
    learning_rate: float | None = None
    tokens_per_second: float | None = None
    trained_tokens: int = 0
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


OnEvent = Callable[[TrainEvent], None]


@dataclass
class TrainResult:
    adapter_dir: Path
    steps: int
    final_loss: float | None
    best_val_loss: float | None
    trained_tokens: int
    seconds: float
    stopped_early: bool = False


class Backend(Protocol):
    name: str

    def available(self) -> tuple[bool, str]:
        """Whether this backend can run here, and why (or why not)."""
        ...

    def train(
        self, spec: TrainSpec, dataset_dir: Path, out_dir: Path, on_event: OnEvent
    ) -> TrainResult:
        """Train a LoRA adapter on ``dataset_dir/{train,valid}.jsonl`` into ``out_dir``."""
        ...

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
        """Complete each chat (a list of messages) with the model (+ adapter).

        Chats are rendered as the adapter's training rendered them (its recorded
        settings, ``backends.adapter_settings``): ``template="auto"`` means the trained
        template; ``fallback_template`` applies only where the adapter records none.
        """
        ...

    def loss(
        self,
        model_dir: Path,
        adapter_dir: Path | None,
        split_path: Path,
        *,
        template: str = "auto",
        fallback_template: str | None = None,
    ) -> float:
        """Mean loss per trained (assistant) token over a JSONL split.

        Rendering, cutoff and masking follow the adapter's recorded training settings,
        as in ``generate``.
        """
        ...

    def fuse(self, model_dir: Path, adapter_dir: Path, out_dir: Path) -> Path:
        """Merge the adapter into the base; write an HF-layout model to ``out_dir``."""
        ...


# name -> "module:attribute"; imported only when chosen (no torch/mlx at CLI start-up).
REGISTRY: dict[str, str] = {
    "mlx": "backends.mlx_lora:BACKEND",
    "peft": "backends.peft_lora:BACKEND",
}


def backend_names() -> list[str]:
    return sorted(REGISTRY)


def get_backend(name: str) -> Backend:
    """The backend called ``name`` (``auto`` resolved), checked to be available."""
    if name == "auto":
        name, _ = auto_choice()
    target = REGISTRY.get(name)
    if target is None:
        close = difflib.get_close_matches(name, [*REGISTRY, "auto"], n=1)
        hint = f"did you mean '{close[0]}'?" if close else "use auto, mlx or peft"
        raise UsageError(f"unknown backend '{name}'", hint=hint)
    ok, reason = backend_status(name)
    if not ok:
        raise BackendUnavailableError(f"backend '{name}' is not available here: {reason}")
    module_name, attribute = target.split(":")
    backend: Backend = getattr(importlib.import_module(module_name), attribute)
    return backend


def backend_status(name: str) -> tuple[bool, str]:
    """Availability of a backend judged without importing its framework."""
    if name == "mlx":
        missing = _missing("mlx", "mlx_lm")
        if missing:
            return False, f"{missing} not installed (pip install 'mlx-rsi[mlx]')"
        return True, "Metal" if is_apple_silicon() else "CPU only (slow: for tests on tiny models)"
    if name == "peft":
        missing = _missing("torch", "transformers", "peft")
        if missing:
            return False, f"{missing} not installed (pip install 'mlx-rsi[peft]')"
        return True, "CUDA" if cuda_available() else "CPU (fp32 weights, bf16 autocast)"
    return False, "unknown backend"


def auto_choice() -> tuple[str, str]:
    """The backend ``auto`` picks here, and the reason, per DESIGN.md."""
    mlx_ok, _ = backend_status("mlx")
    peft_ok, peft_reason = backend_status("peft")
    if is_apple_silicon() and mlx_ok:
        return "mlx", "Apple silicon with Metal: MLX"
    if peft_ok and cuda_available():
        return "peft", "CUDA available: PEFT in bf16"
    if peft_ok:
        return "peft", "no Metal or CUDA: PEFT on the CPU (MLX's Linux CPU build is ~25x slower)"
    if mlx_ok:
        return "mlx", f"PEFT unavailable ({peft_reason}): MLX on the CPU"
    return "peft", "neither backend is installed (pip install 'mlx-rsi[peft]' or '[mlx]')"


def is_apple_silicon() -> bool:
    return sys.platform == "darwin" and platform.machine() == "arm64"


def cuda_available() -> bool:
    """True when torch is installed and sees a CUDA device (imports torch if present)."""
    if _missing("torch"):
        return False
    import torch

    return bool(torch.cuda.is_available())


def _missing(*modules: str) -> str:
    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    return ", ".join(absent)
