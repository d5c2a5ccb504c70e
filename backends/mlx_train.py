"""The MLX training loop: mlx-lm's LoRA layers and compiled step, our data, loss and state.

mlx-lm's ``tuner.trainer.train`` cannot be used as is: its chat data trains only the
last assistant turn and its resume restores weights only (FACTS.md). So this loop
keeps mlx-lm's pieces (``linear_to_lora_layers``, the compiled step with gradient
accumulation, ``grad_checkpoint``, ``average_gradients`` under ``mlx.launch``) and adds
a per-token mask loss over every assistant turn, token-weighted accumulation,
checkpoints with optimizer state, evaluation with early stopping (keep-best),
metrics.jsonl + TensorBoard, and Ctrl-C → checkpoint → ``InterruptedRun``.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.nn.utils import average_gradients
from mlx.utils import tree_map

from backends import mlx_checkpoint as ckpt
from backends import mlx_data as data
from backends import mlx_model, run_files
from backends.base import EventKind, OnEvent, TrainResult, TrainSpec, spec_to_dict
from mlx_rsi.errors import BackendError, DatasetError, InterruptedRun

StepFn = Callable[..., tuple[mx.array, Any]]
LossFn = Callable[[nn.Module, mx.array, mx.array, mx.array, mx.array], mx.array]


def scalar(value: mx.array) -> float:
    """A 0-d array as a Python float."""
    return float(cast(float, value.item()))


def full_loss(
    model: nn.Module, inputs: mx.array, index: mx.array, targets: mx.array, weight: mx.array
) -> mx.array:
    """Summed cross-entropy at the selected positions, from the model's full logits."""
    logits = model(inputs)
    chosen = logits.reshape(-1, logits.shape[-1])[index].astype(mx.float32)
    return (nn.losses.cross_entropy(chosen, targets) * weight).sum()


def head_only_loss(
    model: nn.Module, inputs: mx.array, index: mx.array, targets: mx.array, weight: mx.array
) -> mx.array:
    """The same sum, running the output head only at the selected (trained) positions.

    With a large vocabulary the head dominates the cost and its logits the memory
    (Gemma-3: 262k columns); prompts are usually most of a chat.
    """
    hidden = model.model(inputs)
    chosen = hidden.reshape(-1, hidden.shape[-1])[index]
    logits = _output_head(model)(chosen).astype(mx.float32)
    return (nn.losses.cross_entropy(logits, targets) * weight).sum()


def _output_head(model: nn.Module) -> Callable[[mx.array], mx.array]:
    if "lm_head" in model:
        head: Callable[[mx.array], mx.array] = model.lm_head
        return head
    return cast(Callable[[mx.array], mx.array], model.model.embed_tokens.as_linear)


def make_loss(model: nn.Module) -> LossFn:
    """``head_only_loss`` where the model provably is ``head(model.model(x))``, else full."""
    if not isinstance(getattr(model, "model", None), nn.Module):
        return full_loss
    probe = mx.array([[1, 2, 3, 4, 5, 6, 7, 8]])
    try:
        split = _output_head(model)(model.model(probe))
    except (AttributeError, TypeError, ValueError):
        return full_loss
    whole = model(probe)
    if split.shape != whole.shape or not mx.allclose(split, whole, rtol=1e-3, atol=1e-4).item():
        return full_loss
    return head_only_loss


def batch_arrays(batch: data.Batch) -> tuple[mx.array, mx.array, mx.array, mx.array]:
    """(inputs, index, targets, weight) of a batch, as the loss functions take them."""
    chosen = data.select(batch)
    return (
        mx.array(batch.inputs),
        mx.array(chosen.index),
        mx.array(chosen.targets),
        mx.array(chosen.weight),
    )


def evaluate(
    model: nn.Module,
    examples: Sequence[data.Example],
    batch_size: int,
    group: mx.distributed.Group | None = None,
) -> float:
    """Mean cross-entropy per trained token over ``examples`` (sharded across ranks)."""
    rank, world = (group.rank(), group.size()) if group is not None else (0, 1)
    model.eval()
    loss_fn = make_loss(model)
    total = mx.array(0.0)
    tokens = 0
    for indices in data.length_buckets(examples, batch_size):
        batch = data.collate(examples, indices)
        tokens += batch.trained_tokens
        total = total + loss_fn(model, *batch_arrays(data.shard(batch, rank, world)))
        mx.eval(total)
    if world > 1:
        total = mx.distributed.all_sum(total, group=group, stream=mx.cpu)
    return scalar(total) / max(tokens, 1)


def build_schedule(spec: TrainSpec, total_steps: int) -> Callable[[mx.array], mx.array]:
    """Learning rate per optimizer step: linear warmup, then cosine / linear / constant."""
    peak = spec.learning_rate
    warmup = math.ceil(total_steps * spec.warmup_ratio)
    decay_steps = max(1, total_steps - warmup)
    if spec.schedule == "cosine":
        main = optim.cosine_decay(peak, decay_steps, 0.0)
    elif spec.schedule == "linear":
        main = optim.linear_schedule(peak, 0.0, decay_steps)
    else:

        def main(_: mx.array) -> mx.array:
            return mx.array(peak)

    if warmup == 0:
        return main
    return optim.join_schedules([optim.linear_schedule(0.0, peak, warmup), main], [warmup])


def make_step(model: nn.Module, optimizer: optim.Optimizer) -> StepFn:
    """A compiled micro-step: loss-sum gradients, accumulated; update on the last one."""
    loss_and_grad = nn.value_and_grad(model, make_loss(model))
    state = [model.state, optimizer.state, mx.random.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(
        arrays: tuple[mx.array, mx.array, mx.array, mx.array],
        acc: Any,
        scale: mx.array,
        update: bool,
    ) -> tuple[mx.array, Any]:
        loss, grads = loss_and_grad(model, *arrays)
        if acc is not None:
            grads = tree_map(mx.add, grads, acc)
        if update:
            grads = average_gradients(grads)
            optimizer.update(model, tree_map(lambda g: g * scale, grads))
            grads = None
        return loss, grads

    return step


@contextmanager
def checkpointed_blocks(model: nn.Module, enabled: bool) -> Iterator[None]:
    """mlx-lm's gradient checkpointing of the block class, undone afterwards."""
    if not enabled:
        yield
        return
    from mlx_lm.tuner.trainer import grad_checkpoint

    block_class = type(model.layers[0])
    original = block_class.__call__
    grad_checkpoint(model.layers[0])
    try:
        yield
    finally:
        block_class.__call__ = original


@contextmanager
def deferred_interrupt() -> Iterator[Callable[[], bool]]:
    """First Ctrl-C only raises a flag (checked between steps); a second one interrupts."""
    flag = threading.Event()
    own = threading.current_thread() is threading.main_thread() and (
        signal.getsignal(signal.SIGINT) is signal.default_int_handler
    )
    if not own:
        yield flag.is_set
        return

    def handler(signum: int, frame: object) -> None:
        if flag.is_set():
            raise KeyboardInterrupt
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
    model: nn.Module
    optimizer: optim.Optimizer
    adapter_config: dict[str, Any]
    train: list[data.Example]
    valid: list[data.Example]
    buckets: list[list[int]]
    total_steps: int
    state: ckpt.TrainerState
    group: mx.distributed.Group
    skipped: int = 0
    resumed_from: Path | None = None

    @property
    def is_main(self) -> bool:
        return self.group.rank() == 0


def prepare(spec: TrainSpec, dataset_dir: Path, out_dir: Path) -> Run:
    """Load the model and data, build the optimizer, and restore a checkpoint on resume."""
    train_path = dataset_dir / "train.jsonl"
    valid_path = dataset_dir / "valid.jsonl"
    if not train_path.is_file():
        raise DatasetError(f"no train.jsonl in {dataset_dir}", hint="build the dataset first")
    if not spec.resume and run_files.list_checkpoints(out_dir):
        raise BackendError(
            f"{out_dir} already holds checkpoints of an earlier run",
            hint="resume it (--resume) or train into an empty folder",
        )
    if spec.early_stopping_patience and not valid_path.is_file():
        raise DatasetError(
            f"early stopping needs {valid_path}", hint="add a valid split or turn it off"
        )
    mx.random.seed(spec.seed)
    loaded, group_size = mlx_model.load_base(
        spec.model_dir, quantize_bits=spec.quantize_bits, precision=spec.precision
    )
    config = mlx_model.adapter_config(spec, loaded, group_size)
    mlx_model.add_adapter_layers(loaded.model, config)
    train, skipped = _encode(spec, loaded, train_path)
    if not train:
        raise DatasetError(
            f"{train_path}: no example has a trained assistant token",
            hint="check the chats have assistant turns and cutoff_len is large enough",
        )
    valid = _encode(spec, loaded, valid_path)[0] if valid_path.is_file() else []
    total = spec.total_steps(len(train))
    optimizer = optim.AdamW(learning_rate=build_schedule(spec, total), weight_decay=0.0)
    state = ckpt.TrainerState(
        spec=spec_to_dict(spec), data_digest=run_files.file_digest(train_path)
    )
    run = Run(
        spec, out_dir, loaded.model, optimizer, config, train, valid,
        data.length_buckets(train, spec.batch_size), total, state, mx.distributed.init(), skipped,
    )  # fmt: skip
    if spec.resume:
        _resume(run)
    return run


def _encode(
    spec: TrainSpec, loaded: mlx_model.Loaded, path: Path
) -> tuple[list[data.Example], int]:
    return data.encode_split(
        loaded.hf_tokenizer,
        path,
        template=spec.template,
        fallback=spec.fallback_template,
        cutoff_len=spec.cutoff_len,
        train_on=spec.train_on,
    )


def _resume(run: Run) -> None:
    folder = run_files.latest_checkpoint(run.out_dir)
    saved = ckpt.read_state(folder)
    current = run.state
    changed = run_files.changed_settings(saved.spec, current.spec)
    if changed:
        raise BackendError(
            f"cannot resume {run.out_dir}: {', '.join(changed)} differ from the interrupted run",
            hint="resume with the run's original settings, or start a new run",
        )
    if saved.data_digest != current.data_digest:
        raise BackendError(
            f"cannot resume {run.out_dir}: train.jsonl changed since the interrupted run",
            hint="resume on the same dataset version, or start a new run",
        )
    run.state = ckpt.restore_checkpoint(folder, run.model, run.optimizer)
    run.state.spec = current.spec
    run.resumed_from = folder


class Trainer:
    """Runs the optimizer steps of a prepared ``Run`` and reports through ``on_event``."""

    def __init__(self, run: Run, on_event: OnEvent) -> None:
        self.run = run
        self.spec = run.spec
        self.log = run_files.RunLog(
            run.out_dir,
            on_event,
            main=run.is_main,
            total_steps=run.total_steps,
            # Steps after the checkpoint are trained again: drop their old records.
            resumed_at=run.state.step if run.resumed_from else None,
        )
        self.saved_step = run.state.step if run.resumed_from else -1
        self.started = time.perf_counter()
        self.base_elapsed = run.state.elapsed
        self.window_loss = 0.0
        self.window_tokens = 0
        self.window_start = time.perf_counter()

    def emit(self, kind: EventKind, **fields: Any) -> None:
        self.log.emit(kind, self.run.state.step, **fields)

    def fit(self) -> TrainResult:
        run = self.run
        self.emit(
            "start",
            message=(
                f"training {mlx_model.trainable_count(run.model)} adapter parameters"
                f" on {run.group.size()} process(es)"
            ),
            extra={
                "world_size": run.group.size(),
                "examples": len(run.train),
                "skipped": run.skipped,
                "resumed_from": str(run.resumed_from) if run.resumed_from else None,
            },
        )
        step = make_step(run.model, run.optimizer)
        try:
            with (
                checkpointed_blocks(run.model, self.spec.gradient_checkpointing),
                deferred_interrupt() as interrupted,
            ):
                stopped = self._loop(step, interrupted)
        except KeyboardInterrupt as e:
            # The optimizer's own counter is the truth if Ctrl-C landed mid-bookkeeping.
            run.state.step = int(scalar(run.optimizer.step))
            self.checkpoint()
            raise InterruptedRun(
                f"training interrupted at step {run.state.step}; checkpoint saved",
                hint="rerun with --resume",
            ) from e
        finally:
            self.log.close()
        return self._finish(stopped)

    def _loop(self, step: StepFn, interrupted: Callable[[], bool]) -> bool:
        run, spec = self.run, self.spec
        run.model.train()
        while run.state.step < run.total_steps:
            loss_sum, tokens = self._optimizer_step(step)
            run.state.step += 1
            run.state.trained_tokens += tokens
            self.window_loss += loss_sum
            self.window_tokens += tokens
            at_end = run.state.step == run.total_steps
            if run.state.step % spec.logging_steps == 0 or at_end:
                self._log()
            stop = self._maybe_evaluate(at_end)
            if run.state.step % spec.save_steps == 0 or at_end or stop:
                self.checkpoint()
            if stop:
                return True
            if interrupted():
                raise KeyboardInterrupt
        return False

    def _optimizer_step(self, step: StepFn) -> tuple[float, int]:
        """One optimizer step over ``grad_accum`` micro-batches; (loss sum, trained tokens)."""
        run, spec = self.run, self.spec
        rank, world = run.group.rank(), run.group.size()
        first = run.state.step * spec.grad_accum
        batches = [
            data.collate(run.train, data.micro_batch(run.buckets, spec.seed, first + j))
            for j in range(spec.grad_accum)
        ]
        tokens = sum(b.trained_tokens for b in batches)
        scale = mx.array(1.0 / tokens)
        acc: Any = None
        loss_sum = mx.array(0.0)
        for j, batch in enumerate(batches):
            mx.random.seed(spec.seed * 1_000_003 + first + j)  # dropout keys follow the step
            part = data.shard(batch, rank, world)
            loss, acc = step(batch_arrays(part), acc, scale, j == spec.grad_accum - 1)
            loss_sum = loss_sum + loss
            mx.eval(run.model.state, run.optimizer.state, loss_sum, acc)
        if world > 1:
            loss_sum = mx.distributed.all_sum(loss_sum, group=run.group, stream=mx.cpu)
        return scalar(loss_sum), tokens

    def elapsed(self) -> float:
        return self.base_elapsed + time.perf_counter() - self.started

    def _log(self) -> None:
        run = self.run
        seconds = max(time.perf_counter() - self.window_start, 1e-9)
        loss = self.window_loss / max(self.window_tokens, 1)
        self.log.train_window(
            run.state,
            loss=loss,
            lr=scalar(run.optimizer.learning_rate),
            tokens_per_second=self.window_tokens / seconds,
            elapsed=self.elapsed(),
        )
        self.window_loss, self.window_tokens = 0.0, 0
        self.window_start = time.perf_counter()

    def _maybe_evaluate(self, at_end: bool) -> bool:
        """Evaluate when due; True when early stopping says stop."""
        run, spec = self.run, self.spec
        every = spec.eval_steps or spec.save_steps
        if not run.valid or not (run.state.step % every == 0 or at_end):
            return False
        val_loss = evaluate(run.model, run.valid, spec.batch_size, run.group)
        run.model.train()
        state = run.state
        if state.record_eval(val_loss) and spec.early_stopping_patience:
            self.checkpoint()  # keep-best needs the weights of this step
        self.log.evaluated(state, val_loss, self.elapsed())
        patience = spec.early_stopping_patience
        if patience and state.evals_without_improvement >= patience:
            self.emit("stop", val_loss=state.best_val_loss, message=_stop_message(state))
            return True
        return False

    def checkpoint(self) -> None:
        run = self.run
        if not run.is_main or self.saved_step == run.state.step:
            return
        run.state.elapsed = self.elapsed()
        path = ckpt.save_checkpoint(
            run.out_dir, run.model, run.optimizer, run.adapter_config, run.state
        )
        self.saved_step = run.state.step
        self.emit("save", message=str(path))

    def _finish(self, stopped: bool) -> TrainResult:
        run = self.run
        self.checkpoint()
        state = run.state
        best = state.best_step
        if self.spec.early_stopping_patience and best is not None and run.is_main:
            mlx_model.load_adapter_weights(run.model, run_files.checkpoint_dir(run.out_dir, best))
        adapter_dir = run.out_dir / "adapter"
        if run.is_main:
            mlx_model.save_adapter(adapter_dir, run.model, run.adapter_config)
        self.emit(
            "end", loss=state.last_loss, val_loss=state.best_val_loss, message=str(adapter_dir)
        )
        return state.to_result(adapter_dir, self.elapsed(), stopped)


def _stop_message(state: ckpt.TrainerState) -> str:
    return (
        f"early stop: no improvement in {state.evals_without_improvement} evaluation(s); "
        f"best val_loss {state.best_val_loss:.4f} at step {state.best_step}"
    )


def train(spec: TrainSpec, dataset_dir: Path, out_dir: Path, on_event: OnEvent) -> TrainResult:
    """Train an MLX LoRA adapter into ``out_dir`` (see ``backends.base.Backend.train``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = prepare(spec, Path(dataset_dir), out_dir)
    return Trainer(run, on_event).fit()
