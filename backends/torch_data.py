"""Batches for the PEFT backend: length-grouped, deterministic, resumable, rank-sharded.

Every epoch sorts the examples by length (ties broken by a seeded shuffle), cuts them into
micro-batches and shuffles the batch order, so a batch pads almost nothing. The stream of
micro-batches is a pure function of (seed, dataset, index): optimizer step ``s`` of a run
with ``grad_accum`` GA on W ranks uses the global micro-batches ``s*GA*W ... (s+1)*GA*W-1``
and rank ``r`` takes every W-th of them. A resumed run therefore continues the data order
from its step with nothing to save, and every rank knows the step's global count of trained
tokens, which normalises the loss without a collective.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from backends.chat import EncodedChat


@dataclass(frozen=True)
class Batch:
    """Right-padded ids plus the flat positions whose next token carries loss."""

    input_ids: Any  # torch.LongTensor (b, L)
    positions: Any  # torch.LongTensor (n,): index into the (b*L) hidden states
    targets: Any  # torch.LongTensor (n,): the token each position must predict
    num_targets: int

    def to(self, device: Any) -> Batch:
        return Batch(
            input_ids=self.input_ids.to(device, non_blocking=True),
            positions=self.positions.to(device, non_blocking=True),
            targets=self.targets.to(device, non_blocking=True),
            num_targets=self.num_targets,
        )


def num_targets(example: EncodedChat) -> int:
    """Tokens that carry loss (the first token is never predicted)."""
    return sum(example.mask[1:])


def collate(examples: Sequence[EncodedChat], pad_id: int) -> Batch:
    """Pad to the longest example; right padding never reaches a real token (causal)."""
    import torch

    width = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    positions: list[int] = []
    targets: list[int] = []
    for row, example in enumerate(examples):
        ids[row, : len(example.ids)] = torch.tensor(example.ids, dtype=torch.long)
        for t in range(1, len(example.ids)):
            if example.mask[t]:
                positions.append(row * width + t - 1)
                targets.append(example.ids[t])
    return Batch(
        input_ids=ids,
        positions=torch.tensor(positions, dtype=torch.long),
        targets=torch.tensor(targets, dtype=torch.long),
        num_targets=len(targets),
    )


def length_batches(lengths: Sequence[int], batch_size: int, seed: int) -> list[list[int]]:
    """Example indices grouped by length into batches, batch order shuffled by ``seed``."""
    rng = random.Random(seed)
    tiebreak = [rng.random() for _ in lengths]
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], tiebreak[i]))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def eval_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Length-sorted batches in a fixed order (evaluation needs no shuffle)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


class BatchStream:
    """The endless, deterministic stream of micro-batches (lists of example indices)."""

    def __init__(self, examples: Sequence[EncodedChat], batch_size: int, seed: int) -> None:
        self.examples = examples
        self.lengths = [len(e.ids) for e in examples]
        self.targets = [num_targets(e) for e in examples]
        self.batch_size = batch_size
        self.seed = seed
        self.per_epoch = -(-len(examples) // batch_size)
        self._epoch = lru_cache(maxsize=2)(self._epoch_batches)

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        return length_batches(self.lengths, self.batch_size, self.seed * 100_003 + epoch)

    def batch(self, index: int) -> list[int]:
        """Example indices of global micro-batch ``index``."""
        epoch, position = divmod(index, self.per_epoch)
        return self._epoch(epoch)[position]

    def step_batches(self, step: int, grad_accum: int, world: int) -> list[list[int]]:
        """The GA*W global micro-batches of optimizer step ``step`` (0-based)."""
        start = step * grad_accum * world
        return [self.batch(start + j) for j in range(grad_accum * world)]

    def rank_batches(self, step: int, grad_accum: int, world: int, rank: int) -> list[list[int]]:
        return self.step_batches(step, grad_accum, world)[rank::world]

    def step_targets(self, step: int, grad_accum: int, world: int) -> int:
        """Trained tokens of the whole optimizer step, across all ranks."""
        batches = self.step_batches(step, grad_accum, world)
        return sum(self.targets[i] for batch in batches for i in batch)

    def epoch_of(self, step: int, grad_accum: int, world: int) -> float:
        return step * grad_accum * world / self.per_epoch
