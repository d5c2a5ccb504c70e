"""Tokenized chat examples, length-bucketed batches and a resumable data order (numpy only).

The MLX backend trains on every assistant turn: examples come from
``backends.chat.encode_chat`` (ids + per-token mask), never from mlx-lm's chat
dataset, which masks only the last assistant message (FACTS.md). The order of
micro-batches is a pure function of (seed, micro-batch index), so a resumed run
continues exactly where the interrupted one stopped without saving any RNG state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backends import chat

PAD_MULTIPLE = 32  # pad batch length to a multiple: few distinct shapes for mx.compile
SELECT_MULTIPLE = 64  # pad the count of trained positions likewise


@dataclass(frozen=True)
class Example:
    """One tokenized chat: token ids and the loss mask on those ids (True = trained)."""

    ids: np.ndarray  # int32, (n,)
    mask: np.ndarray  # bool, (n,)

    @property
    def trained_tokens(self) -> int:
        """Targets that carry loss (the first token is never a target)."""
        return int(self.mask[1:].sum())


@dataclass(frozen=True)
class Batch:
    """Right-padded inputs/targets with the per-target loss mask, as numpy arrays."""

    inputs: np.ndarray  # int32 (b, L)
    targets: np.ndarray  # int32 (b, L)
    mask: np.ndarray  # float32 (b, L): 1.0 where the target is trained

    @property
    def trained_tokens(self) -> int:
        return int(self.mask.sum())


def encode_split(
    tokenizer: Any,
    path: Path,
    *,
    template: str,
    fallback: str,
    cutoff_len: int,
    train_on: str,
) -> tuple[list[Example], int]:
    """A JSONL chat split encoded by ``backends.chat``; returns (examples, skipped).

    ``encode_dataset`` drops (and counts) chats left without a trained token.
    """
    encoded = chat.encode_dataset(
        tokenizer,
        chat.read_jsonl(path),
        template=template,
        fallback=fallback,
        cutoff_len=cutoff_len,
        train_on=train_on,
    )
    examples = [
        Example(ids=np.asarray(e.ids, dtype=np.int32), mask=np.asarray(e.mask, dtype=bool))
        for e in encoded.examples
    ]
    kept = [e for e in examples if e.trained_tokens > 0]
    return kept, encoded.skipped + len(examples) - len(kept)


def length_buckets(examples: Sequence[Example], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (less padding); the last may be short."""
    order = sorted(range(len(examples)), key=lambda i: (len(examples[i].ids), i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def micro_batch(buckets: Sequence[list[int]], seed: int, index: int) -> list[int]:
    """The example indices of micro-batch ``index`` of the endless, epoch-shuffled stream."""
    epoch, position = divmod(index, len(buckets))
    order = np.random.default_rng([seed, epoch]).permutation(len(buckets))
    return buckets[int(order[position])]


def collate(examples: Sequence[Example], indices: Sequence[int]) -> Batch:
    """Right-pad the chosen examples into next-token inputs, targets and mask."""
    longest = max(len(examples[i].ids) - 1 for i in indices)
    length = max(PAD_MULTIPLE, -(-longest // PAD_MULTIPLE) * PAD_MULTIPLE)
    inputs = np.zeros((len(indices), length), dtype=np.int32)
    targets = np.zeros((len(indices), length), dtype=np.int32)
    mask = np.zeros((len(indices), length), dtype=np.float32)
    for row, i in enumerate(indices):
        ids, trained = examples[i].ids, examples[i].mask
        n = len(ids) - 1
        inputs[row, :n] = ids[:-1]
        targets[row, :n] = ids[1:]
        mask[row, :n] = trained[1:]
    return Batch(inputs=inputs, targets=targets, mask=mask)


@dataclass(frozen=True)
class Selection:
    """The trained positions of a batch, padded with weight-0 entries to a multiple."""

    index: np.ndarray  # int32 (P,): flat positions into (rows * length)
    targets: np.ndarray  # int32 (P,)
    weight: np.ndarray  # float32 (P,): 1.0 for a trained position, 0.0 for padding


def select(batch: Batch, multiple: int = SELECT_MULTIPLE) -> Selection:
    """Where the loss is computed: only there does the output head need to run."""
    flat = np.flatnonzero(batch.mask.reshape(-1) > 0)
    size = max(multiple, -(-len(flat) // multiple) * multiple)
    index = np.zeros(size, dtype=np.int32)
    targets = np.zeros(size, dtype=np.int32)
    weight = np.zeros(size, dtype=np.float32)
    index[: len(flat)] = flat
    targets[: len(flat)] = batch.targets.reshape(-1)[flat]
    weight[: len(flat)] = batch.mask.reshape(-1)[flat]
    return Selection(index=index, targets=targets, weight=weight)


def shard(batch: Batch, rank: int, world: int) -> Batch:
    """This rank's rows of a global batch; an empty share becomes one all-masked row."""
    if world == 1:
        return batch
    rows = slice(rank, None, world)
    part = Batch(batch.inputs[rows], batch.targets[rows], batch.mask[rows])
    if len(part.inputs) == 0:
        zeros = np.zeros((1, batch.inputs.shape[1]), dtype=np.int32)
        part = Batch(zeros, zeros.copy(), np.zeros((1, batch.inputs.shape[1]), np.float32))
    return part
