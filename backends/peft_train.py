"""PEFT training: Accelerate for devices and ranks, our data, loss and checkpoints.

The loop itself (schedule, cadence, early stopping, Ctrl-C, metrics) is ``backends.loop``,
shared with the MLX backend; ``PeftFramework`` is what it calls. The same code runs as a
plain process, under ``torchrun --nproc_per_node N`` on CPUs (gloo) or under ``accelerate
launch`` on GPUs: an ``accelerate.Accelerator`` wraps the loss module in DDP when there
are several ranks. The loss is a token-weighted mean over the whole optimizer step (all
micro-batches, all ranks); its normaliser is known on every rank from the deterministic
batch stream, so no collective is needed for it. The host reads device values only at
logging, eval and save steps.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from backends import loop, run_files, torch_model
from backends import peft_checkpoint as ckpt
from backends import torch_data as data
from backends.adapter_settings import TrainedSettings
from backends.base import OnEvent, TrainResult, TrainSpec, spec_to_dict
from backends.chat import (
    EncodedChat,
    encode_dataset,
    load_tokenizer,
    read_jsonl,
    resolve_template,
)
from mlx_rsi import atomic
from mlx_rsi.errors import DatasetError

log = logging.getLogger(__name__)

MAX_GRAD_NORM = 1.0
WEIGHT_DECAY = 0.0


def encode_split(tokenizer: Any, path: Path, spec: TrainSpec) -> tuple[list[EncodedChat], int]:
    """Encoded examples of a JSONL split with a trained target, and how many were dropped."""
    encoded = encode_dataset(
        tokenizer,
        read_jsonl(path),
        template=spec.template,
        fallback=spec.fallback_template,
        cutoff_len=spec.cutoff_len,
        train_on=spec.train_on,
    )
    kept = [e for e in encoded.examples if data.num_targets(e) > 0]
    return kept, encoded.skipped + len(encoded.examples) - len(kept)


def evaluate(
    loss_module: Any,
    examples: Sequence[EncodedChat],
    batch_size: int,
    plan: torch_model.PrecisionPlan,
    pad_id: int,
    accelerator: Any = None,
) -> float:
    """Mean cross-entropy per trained token over ``examples`` (sharded across ranks)."""
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    lengths = [len(e.ids) for e in examples]
    totals = torch.zeros(2, dtype=torch.float64, device=plan.device)
    was_training = loss_module.training
    loss_module.eval()
    with torch.no_grad():
        for indices in data.eval_batches(lengths, batch_size)[rank::world]:
            batch = data.collate([examples[i] for i in indices], pad_id).to(plan.device)
            with plan.autocast():
                loss_sum = loss_module(batch.input_ids, batch.positions, batch.targets)
            totals[0] += loss_sum.double()
            totals[1] += batch.num_targets
    loss_module.train(was_training)
    if world > 1:
        totals = accelerator.reduce(totals, reduction="sum")
    total, count = totals.tolist()
    return total / max(count, 1.0)


@dataclass
class Run:
    """Everything one training run works on."""

    spec: TrainSpec
    out_dir: Path
    accelerator: Any
    plan: torch_model.PrecisionPlan
    model: Any  # the PeftModel (unwrapped)
    loss_module: Any  # MaskedLMLoss, DDP-wrapped when there are several ranks
    optimizer: Any
    train: list[EncodedChat]
    valid: list[EncodedChat]
    stream: data.BatchStream
    pad_id: int
    total_steps: int
    state: ckpt.TrainerState
    scaler: Any = None  # torch.amp.GradScaler, enabled for fp16 only
    settings: TrainedSettings = field(
        default_factory=TrainedSettings
    )  # recorded beside every adapter written
    trainable: list[Any] = field(default_factory=list)
    skipped: int = 0  # training chats left without a trained token
    resumed_from: Path | None = None

    @property
    def rank(self) -> int:
        return int(self.accelerator.process_index)

    @property
    def world(self) -> int:
        return int(self.accelerator.num_processes)

    @property
    def is_main(self) -> bool:
        return bool(self.accelerator.is_main_process)


def prepare_run(spec: TrainSpec, dataset_dir: Path, out_dir: Path) -> Run:
    """Load data, model, adapter, optimizer and (with ``spec.resume``) the last checkpoint."""
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    out_dir = Path(out_dir)
    resume_from = run_files.resume_point(out_dir, spec.resume)
    tokenizer = load_tokenizer(spec.model_dir)
    train, skipped = encode_split(tokenizer, Path(dataset_dir) / "train.jsonl", spec)
    if not train:
        raise DatasetError(
            f"no trainable example in {dataset_dir}/train.jsonl (no assistant token left)",
            hint="check the chat format, or raise cutoff_len",
        )
    valid = _valid_split(tokenizer, Path(dataset_dir) / "valid.jsonl", spec)
    world = accelerator.num_processes
    total = spec.total_steps(-(-len(train) // world))
    plan = torch_model.resolve_precision(spec.precision, accelerator.device)
    torch.manual_seed(spec.seed)
    model = torch_model.add_lora(
        torch_model.load_model(spec.model_dir, plan, quantize_bits=spec.quantize_bits), spec
    )
    if spec.init_adapter is not None and resume_from is None:
        torch_model.load_adapter_weights(model, spec.init_adapter)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    # The loop sets the rate before every step (backends.loop.learning_rate).
    optimizer = torch.optim.AdamW(trainable, lr=spec.learning_rate, weight_decay=WEIGHT_DECAY)
    scaler = torch.amp.GradScaler(plan.device.type, enabled=plan.needs_loss_scaling)
    digest = run_files.file_digest(Path(dataset_dir) / "train.jsonl")
    state = ckpt.TrainerState(world_size=world, data_digest=digest, spec=spec_to_dict(spec))
    if resume_from is not None:
        ckpt.check_compatible(ckpt.read_state(resume_from), state, out_dir)
        state = ckpt.restore_checkpoint(resume_from, model, optimizer, plan.device, scaler)
        state.spec = spec_to_dict(spec)
        log.info("resuming %s from step %d", out_dir, state.step)
    head_dtype = None
    if plan.frozen_dtype is not None and not spec.use_dora:
        head_dtype = torch_model.store_frozen_in(model, plan.frozen_dtype)
    loss_module = accelerator.prepare_model(torch_model.MaskedLMLoss(model, head_dtype))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return Run(
        spec=spec,
        out_dir=out_dir,
        accelerator=accelerator,
        plan=plan,
        model=model,
        loss_module=loss_module,
        optimizer=optimizer,
        train=train,
        valid=valid,
        stream=data.BatchStream(train, spec.batch_size, spec.seed),
        pad_id=int(pad_id),
        total_steps=total,
        state=state,
        scaler=scaler,
        settings=TrainedSettings(
            template=resolve_template(tokenizer, spec.template, spec.fallback_template),
            fallback_template=spec.fallback_template,
            cutoff_len=spec.cutoff_len,
            train_on=spec.train_on,
        ),
        trainable=trainable,
        skipped=skipped,
        resumed_from=resume_from,
    )


def _valid_split(tokenizer: Any, path: Path, spec: TrainSpec) -> list[EncodedChat]:
    valid = encode_split(tokenizer, path, spec)[0] if path.is_file() else []
    if not valid and spec.early_stopping_patience is not None:
        raise DatasetError(
            f"early stopping needs validation data, and {path} has none",
            hint="build the dataset with a valid split, or turn early stopping off",
        )
    if not valid:
        log.info("no validation examples in %s: training without evaluation", path)
    return valid


class PeftFramework:
    """The PEFT side of ``backends.loop``: an Accelerate step, evaluation and checkpoints."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.world_size = run.world
        self.is_main = run.is_main
        self.examples = len(run.train)
        self.target_tokens = sum(data.num_targets(e) for e in run.train)
        self.tokens = sum(len(e.ids) for e in run.train)
        self.skipped = run.skipped
        self.trainable_parameters = sum(p.numel() for p in run.trainable)
        self.has_valid = bool(run.valid)
        # Summed on the device; the host reads it only at logging steps.
        self._loss_sum = torch.zeros((), dtype=torch.float64, device=run.plan.device)

    def train_step(self, step: int, lr: float) -> int:
        run, spec = self.run, self.run.spec
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        batches = run.stream.rank_batches(step, spec.grad_accum, run.world, run.rank)
        step_targets = run.stream.step_targets(step, spec.grad_accum, run.world)
        scale = run.world / max(step_targets, 1)
        torch.manual_seed(spec.seed * 1_000_003 + step * run.world + run.rank)  # dropout
        for i, indices in enumerate(batches):
            batch = data.collate([run.train[j] for j in indices], run.pad_id).to(run.plan.device)
            syncing = i == len(batches) - 1 or run.world == 1
            context = (
                contextlib.nullcontext() if syncing else run.accelerator.no_sync(run.loss_module)
            )
            with context:
                with run.plan.autocast():
                    loss_sum = run.loss_module(batch.input_ids, batch.positions, batch.targets)
                run.scaler.scale(loss_sum * scale).backward()
            self._loss_sum += loss_sum.detach().double()
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.trainable, MAX_GRAD_NORM)
        run.scaler.step(run.optimizer)  # skips the step on inf/nan gradients (fp16 only)
        run.scaler.update()
        run.optimizer.zero_grad(set_to_none=True)
        return step_targets

    def take_loss_sum(self) -> float:
        total = self._loss_sum
        if self.world_size > 1:
            total = self.run.accelerator.reduce(total.clone(), reduction="sum")
        value = float(total.item())
        self._loss_sum.zero_()
        return value

    def evaluate(self) -> float:
        run = self.run
        # The bare module: under DDP a forward with uneven shards would wait on other ranks.
        return evaluate(
            run.accelerator.unwrap_model(run.loss_module),
            run.valid,
            run.spec.batch_size,
            run.plan,
            run.pad_id,
            run.accelerator,
        )

    def save_checkpoint(self, state: Any) -> Path:
        run = self.run
        return ckpt.save_checkpoint(run.out_dir, run.model, run.optimizer, state, run.scaler)

    def save_best(self, folder: Path, state: Any) -> None:
        ckpt.save_adapter(folder, self.run.model, self.run.settings)

    def write_adapter(self, adapter_dir: Path, best: Path | None) -> None:
        run = self.run
        if best is None:
            ckpt.save_adapter(adapter_dir, run.model, run.settings)
            return
        with atomic.staged_dir(adapter_dir, replace=True) as tmp:
            for name in ckpt.ADAPTER_FILES:
                (tmp / name).write_bytes((best / name).read_bytes())

    def barrier(self) -> None:
        self.run.accelerator.wait_for_everyone()


def train(spec: TrainSpec, dataset_dir: Path, out_dir: Path, on_event: OnEvent) -> TrainResult:
    """Train a LoRA adapter per ``spec``; see the module docstring for the layout."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with torch_model.quiet():
        run = prepare_run(spec, Path(dataset_dir), Path(out_dir))
        return loop.TrainLoop(
            spec, run.out_dir, PeftFramework(run), run.state, run.total_steps, on_event,
            resumed_from=run.resumed_from,
        ).fit()  # fmt: skip
