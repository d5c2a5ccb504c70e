"""The PEFT training loop: Accelerate for devices and ranks, our data, loss and state.

One loop runs as a plain process, under ``torchrun --nproc_per_node N`` on CPUs (gloo) or
under ``accelerate launch`` on GPUs: an ``accelerate.Accelerator`` wraps the loss module in
DDP when there are several ranks. The loss is a token-weighted mean over the whole
optimizer step (all micro-batches, all ranks); its normaliser is known on every rank from
the deterministic batch stream, so no collective is needed for it. The host reads device
values only at logging, eval and save steps.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from backends import peft_checkpoint as ckpt
from backends import run_files, torch_model
from backends import torch_data as data
from backends.base import EventKind, OnEvent, TrainResult, TrainSpec, spec_to_dict
from backends.chat import (
    EncodedChat,
    encode_dataset,
    load_tokenizer,
    read_jsonl,
    resolve_template,
    write_template_record,
)
from mlx_rsi import atomic
from mlx_rsi.errors import BackendError, DatasetError, InterruptedRun

log = logging.getLogger(__name__)

MAX_GRAD_NORM = 1.0
WEIGHT_DECAY = 0.0


def lr_lambda(spec: TrainSpec, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the peak learning rate at a step: warmup, then the schedule."""
    warmup = math.ceil(spec.warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if spec.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        if spec.schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def encode_split(tokenizer: Any, path: Path, spec: TrainSpec) -> list[EncodedChat]:
    """Encoded examples of a JSONL split that have at least one trained target."""
    encoded = encode_dataset(
        tokenizer,
        read_jsonl(path),
        template=spec.template,
        fallback=spec.fallback_template,
        cutoff_len=spec.cutoff_len,
        train_on=spec.train_on,
    )
    return [e for e in encoded.examples if data.num_targets(e) > 0]


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


@contextlib.contextmanager
def sigint_flag(enabled: bool) -> Iterator[Callable[[], bool]]:
    """Turn Ctrl-C into a flag the loop checks between optimizer steps."""
    flag = threading.Event()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield flag.is_set
        return

    def handler(signum: int, frame: Any) -> None:
        flag.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag.is_set
    finally:
        signal.signal(signal.SIGINT, previous)


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
    scheduler: Any
    train: list[EncodedChat]
    valid: list[EncodedChat]
    stream: data.BatchStream
    pad_id: int
    total_steps: int
    state: ckpt.TrainerState
    scaler: Any = None  # torch.amp.GradScaler, enabled for fp16 only
    template: str = "native"  # the resolved chat template: "native" or a fallback name
    trainable: list[Any] = field(default_factory=list)
    resumed_at: int | None = None

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
    resume_from = _resume_point(spec, out_dir)
    tokenizer = load_tokenizer(spec.model_dir)
    train = encode_split(tokenizer, Path(dataset_dir) / "train.jsonl", spec)
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
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=spec.learning_rate, weight_decay=WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(spec, total))
    scaler = torch.amp.GradScaler(plan.device.type, enabled=plan.needs_loss_scaling)
    digest = run_files.file_digest(Path(dataset_dir) / "train.jsonl")
    state = ckpt.TrainerState(world_size=world, data_digest=digest, spec=spec_to_dict(spec))
    if resume_from is not None:
        ckpt.check_compatible(ckpt.read_state(resume_from), spec, digest, world)
        state = ckpt.restore_checkpoint(
            resume_from, model, optimizer, scheduler, plan.device, scaler
        )
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
        scheduler=scheduler,
        train=train,
        valid=valid,
        stream=data.BatchStream(train, spec.batch_size, spec.seed),
        pad_id=int(pad_id),
        total_steps=total,
        state=state,
        scaler=scaler,
        template=resolve_template(tokenizer, spec.template, spec.fallback_template),
        trainable=trainable,
        resumed_at=state.step if resume_from is not None else None,
    )


def _resume_point(spec: TrainSpec, out_dir: Path) -> Path | None:
    run_files.prune_incomplete(out_dir)
    if spec.resume:
        return run_files.latest_checkpoint(out_dir)
    if run_files.list_checkpoints(out_dir):
        raise BackendError(
            f"{out_dir} already holds checkpoints of an earlier run",
            hint="resume it (--resume) or train into a new folder",
        )
    return None


def _valid_split(tokenizer: Any, path: Path, spec: TrainSpec) -> list[EncodedChat]:
    valid = encode_split(tokenizer, path, spec) if path.is_file() else []
    if not valid and spec.early_stopping_patience is not None:
        raise DatasetError(
            f"early stopping needs validation data, and {path} has none",
            hint="build the dataset with a valid split, or turn early stopping off",
        )
    if not valid:
        log.info("no validation examples in %s: training without evaluation", path)
    return valid


class Trainer:
    """Runs the optimizer steps of a prepared ``Run`` and reports through ``on_event``."""

    def __init__(self, run: Run, on_event: OnEvent) -> None:
        self.run = run
        self.log = run_files.RunLog(
            run.out_dir,
            on_event,
            main=run.is_main,
            total_steps=run.total_steps,
            resumed_at=run.resumed_at,
        )
        self.window_loss = torch.zeros((), dtype=torch.float64, device=run.plan.device)
        self.window_tokens = 0
        self.window_start = time.perf_counter()
        self.started = time.perf_counter() - run.state.elapsed
        self.stopped_early = False

    def emit(self, kind: EventKind, **fields: Any) -> None:
        self.log.emit(kind, self.run.state.step, **fields)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def fit(self) -> TrainResult:
        run = self.run
        self.emit("start", message=f"{len(run.train)} examples, {run.world} process(es)")
        try:
            with sigint_flag(run.world == 1) as interrupted:
                self._loop(interrupted)
        except KeyboardInterrupt as e:
            raise self._interrupt() from e
        finally:
            self.log.close()
        return self._finish()

    def _loop(self, interrupted: Callable[[], bool]) -> None:
        run, spec = self.run, self.run.spec
        eval_every = spec.eval_steps or spec.save_steps
        while run.state.step < run.total_steps:
            self._optimizer_step()
            step = run.state.step
            last = step == run.total_steps
            if step % spec.logging_steps == 0 or last:
                self._log()
            if run.valid and (step % eval_every == 0 or last) and self._evaluate():
                break
            if step % spec.save_steps == 0 and not last:
                self._save()
            if interrupted():
                raise self._interrupt()

    def _optimizer_step(self) -> None:
        run, spec = self.run, self.run.spec
        step = run.state.step
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
            self.window_loss += loss_sum.detach().double()
            self.window_tokens += batch.num_targets
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.trainable, MAX_GRAD_NORM)
        run.scaler.step(run.optimizer)  # skips the step on inf/nan gradients (fp16 only)
        run.scaler.update()
        run.scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
        run.state.step += 1
        run.state.trained_tokens += step_targets

    def _log(self) -> None:
        run = self.run
        totals = torch.stack(
            [self.window_loss, torch.tensor(float(self.window_tokens), device=run.plan.device)]
        )
        if run.world > 1:
            totals = run.accelerator.reduce(totals.double(), reduction="sum")
        loss_sum, tokens = totals.tolist()
        seconds = max(time.perf_counter() - self.window_start, 1e-9)
        loss = loss_sum / max(tokens, 1.0)
        self.log.train_window(
            run.state,
            loss=loss,
            lr=float(run.scheduler.get_last_lr()[0]),
            tokens_per_second=tokens / seconds,
            elapsed=self.elapsed(),
        )
        self.window_loss.zero_()
        self.window_tokens = 0
        self.window_start = time.perf_counter()

    def _evaluate(self) -> bool:
        """Evaluate on the valid split; True when early stopping says stop."""
        run, state = self.run, self.run.state
        began = time.perf_counter()
        # The bare module: under DDP a forward with uneven shards would wait on other ranks.
        val_loss = evaluate(
            run.accelerator.unwrap_model(run.loss_module),
            run.valid,
            run.spec.batch_size,
            run.plan,
            run.pad_id,
            run.accelerator,
        )
        improved = state.record_eval(val_loss)
        if improved and run.is_main and run.spec.early_stopping_patience is not None:
            ckpt.save_best(run.out_dir, run.model, state)
        self.log.evaluated(state, val_loss, self.elapsed())
        self.window_start += time.perf_counter() - began
        patience = run.spec.early_stopping_patience
        if patience is not None and state.evals_without_improvement >= patience:
            self.stopped_early = True
            self.emit("stop", message=f"no improvement in {patience} evals; best at step "
                      f"{state.best_step} (val_loss {state.best_val_loss:.4f})")  # fmt: skip
            return True
        return False

    def _save(self) -> None:
        run = self.run
        began = time.perf_counter()
        run.state.elapsed = self.elapsed()
        if run.is_main:
            path = ckpt.save_checkpoint(
                run.out_dir, run.model, run.optimizer, run.scheduler, run.state, run.scaler
            )
            self.emit("save", message=str(path))
        self.window_start += time.perf_counter() - began

    def _interrupt(self) -> InterruptedRun:
        step = self.run.state.step
        self._save()
        return InterruptedRun(
            f"training interrupted at step {step}; checkpoint saved", hint="rerun with --resume"
        )

    def _finish(self) -> TrainResult:
        run, state = self.run, self.run.state
        adapter_dir = run.out_dir / "adapter"
        best = run_files.checkpoints_root(run.out_dir) / ckpt.BEST_DIR
        keep_best = run.spec.early_stopping_patience is not None and best.is_dir()
        if run.is_main:
            with atomic.staged_dir(adapter_dir, replace=True) as tmp:
                if keep_best:
                    for name in ("adapter_model.safetensors", "adapter_config.json"):
                        (tmp / name).write_bytes((best / name).read_bytes())
                else:
                    run.model.save_pretrained(str(tmp))
                write_template_record(tmp, run.template)
        run.accelerator.wait_for_everyone()
        self.emit("end", loss=state.last_loss, val_loss=state.best_val_loss,
                  trained_tokens=state.trained_tokens)  # fmt: skip
        return state.to_result(adapter_dir, self.elapsed(), self.stopped_early)


def train(spec: TrainSpec, dataset_dir: Path, out_dir: Path, on_event: OnEvent) -> TrainResult:
    """Train a LoRA adapter per ``spec``; see the module docstring for the layout."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with torch_model.quiet():
        run = prepare_run(spec, Path(dataset_dir), Path(out_dir))
        return Trainer(run, on_event).fit()
