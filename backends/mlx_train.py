"""MLX training: mlx-lm's LoRA layers and compiled step, our data, loss and checkpoints.

mlx-lm's ``tuner.trainer.train`` cannot be used as is: its chat data trains only the
last assistant turn and its resume restores weights only (FACTS.md). So this module
keeps mlx-lm's pieces (``linear_to_lora_layers``, the compiled step with gradient
accumulation, ``grad_checkpoint``, ``average_gradients`` under ``mlx.launch``) and adds
a per-token mask loss over every assistant turn, token-weighted accumulation and
checkpoints with optimizer state. The loop itself (schedule, cadence, early stopping,
Ctrl-C, metrics) is ``backends.loop``, shared with the PEFT backend; ``MlxFramework``
is what it calls.
"""

from __future__ import annotations

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

from backends import loop, mlx_model, run_files
from backends import mlx_checkpoint as ckpt
from backends import mlx_data as data
from backends.base import OnEvent, TrainResult, TrainSpec, spec_to_dict
from mlx_rsi.errors import DatasetError

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
    training = model.training
    model.eval()  # dropout off: the two forwards must see the same weights
    try:
        split = _output_head(model)(model.model(probe))
        whole = model(probe)
    except (AttributeError, TypeError, ValueError):
        return full_loss
    finally:
        model.train(training)
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
    """mlx-lm's gradient checkpointing of the block class, undone afterwards.

    With LoRA dropout the recomputed blocks draw new dropout masks in the backward
    pass (``mx.checkpoint`` replays the forward with fresh random keys), so the
    gradients then differ from an unchecked step's; without dropout they are the same.
    """
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
    resume_from = run_files.resume_point(out_dir, spec.resume)
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
    if spec.init_adapter is not None and resume_from is None:
        mlx_model.load_adapter_weights(loaded.model, spec.init_adapter)
    train, skipped = _encode(spec, loaded, train_path)
    if not train:
        raise DatasetError(
            f"{train_path}: no example has a trained assistant token",
            hint="check the chats have assistant turns and cutoff_len is large enough",
        )
    valid = _encode(spec, loaded, valid_path)[0] if valid_path.is_file() else []
    total = spec.total_steps(len(train))
    # The loop sets the rate before every step (backends.loop.learning_rate).
    optimizer = optim.AdamW(learning_rate=spec.learning_rate, weight_decay=0.0)
    state = ckpt.TrainerState(
        spec=spec_to_dict(spec), data_digest=run_files.file_digest(train_path)
    )
    run = Run(
        spec, out_dir, loaded.model, optimizer, config, train, valid,
        data.length_buckets(train, spec.batch_size), total, state, mx.distributed.init(), skipped,
    )  # fmt: skip
    if resume_from is not None:
        _resume(run, resume_from)
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


def _resume(run: Run, folder: Path) -> None:
    run_files.check_resumable(ckpt.read_state(folder), run.state, run.out_dir)
    current_spec = run.state.spec
    run.state = ckpt.restore_checkpoint(folder, run.model, run.optimizer)
    run.state.spec = current_spec
    run.resumed_from = folder


class MlxFramework:
    """The MLX side of ``backends.loop``: a compiled step, evaluation and checkpoint files."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.world_size = run.group.size()
        self.is_main = run.is_main
        self.examples = len(run.train)
        self.target_tokens = sum(e.trained_tokens for e in run.train)
        self.tokens = sum(int(e.ids.size) for e in run.train)
        self.skipped = run.skipped
        self.trainable_parameters = mlx_model.trainable_count(run.model)
        self.has_valid = bool(run.valid)
        self._step = make_step(run.model, run.optimizer)
        self._loss_sum = mx.array(0.0)

    def train_step(self, step: int, lr: float) -> int:
        """One optimizer step over ``grad_accum`` micro-batches; the step's trained tokens."""
        run, spec = self.run, self.run.spec
        rank, world = run.group.rank(), run.group.size()
        run.optimizer.learning_rate = lr
        first = step * spec.grad_accum
        batches = [
            data.collate(run.train, data.micro_batch(run.buckets, spec.seed, first + j))
            for j in range(spec.grad_accum)
        ]
        tokens = sum(b.trained_tokens for b in batches)
        scale = mx.array(1.0 / tokens)
        acc: Any = None
        for j, batch in enumerate(batches):
            mx.random.seed(spec.seed * 1_000_003 + first + j)  # dropout keys follow the step
            part = data.shard(batch, rank, world)
            loss, acc = self._step(batch_arrays(part), acc, scale, j == spec.grad_accum - 1)
            self._loss_sum = self._loss_sum + loss
            mx.eval(run.model.state, run.optimizer.state, self._loss_sum, acc)
        return tokens

    def take_loss_sum(self) -> float:
        total = self._loss_sum
        if self.world_size > 1:
            total = mx.distributed.all_sum(total, group=self.run.group, stream=mx.cpu)
        self._loss_sum = mx.array(0.0)
        return scalar(total)

    def evaluate(self) -> float:
        run = self.run
        val_loss = evaluate(run.model, run.valid, run.spec.batch_size, run.group)
        run.model.train()
        return val_loss

    def save_checkpoint(self, state: Any) -> Path:
        run = self.run
        return ckpt.save_checkpoint(
            run.out_dir, run.model, run.optimizer, run.adapter_config, state
        )

    def save_best(self, folder: Path, state: Any) -> None:
        mlx_model.save_adapter(folder, self.run.model, self.run.adapter_config)

    def write_adapter(self, adapter_dir: Path, best: Path | None) -> None:
        run = self.run
        if best is not None:
            mlx_model.load_adapter_weights(run.model, best)
        mlx_model.save_adapter(adapter_dir, run.model, run.adapter_config)

    def barrier(self) -> None:
        """Nothing to wait for: rank 0 alone writes, and the run ends after it."""


def train(spec: TrainSpec, dataset_dir: Path, out_dir: Path, on_event: OnEvent) -> TrainResult:
    """Train an MLX LoRA adapter into ``out_dir`` (see ``backends.base.Backend.train``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = prepare(spec, Path(dataset_dir), out_dir)
    run.model.train()
    framework = MlxFramework(run)
    with checkpointed_blocks(run.model, spec.gradient_checkpointing):
        return loop.TrainLoop(
            spec, out_dir, framework, run.state, run.total_steps, on_event,
            resumed_from=run.resumed_from,
        ).fit()  # fmt: skip
