"""Duplicates: exact (normalized content hash) and near (MinHash/LSH, datasketch).

Both keep the best-scored member: examples are visited best first (score, then a
stable key), and one is dropped when an already kept example has the same content
hash, or an estimated Jaccard similarity of at least ``threshold`` over the word
1- and 2-grams of its text (request and answer, tool calls included).
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections import Counter
from typing import TYPE_CHECKING

import orjson

from mlx_rsi.records import Example

if TYPE_CHECKING:
    from datasketch import MinHash

NUM_PERM = 128
_WORD = re.compile(r"\w+")


def example_text(example: Example) -> str:
    """All trained text of an example (content and tool-call arguments), one string."""
    parts = []
    for message in example.messages:
        parts.append(str(message.get("content") or ""))
        for call in message.get("tool_calls") or []:
            function = call.get("function", {})
            parts.append(str(function.get("name", "")))
            parts.append(
                orjson.dumps(function.get("arguments"), option=orjson.OPT_SORT_KEYS).decode()
            )
    return "\n".join(parts)


def stable_key(example: Example) -> str:
    """A deterministic tie-breaker independent of input order."""
    return hashlib.sha256(f"{example.session_id}\0{example.content_hash}".encode()).hexdigest()


def best_first(examples: list[Example]) -> list[Example]:
    return sorted(examples, key=lambda e: (-e.score, stable_key(e)))


def dedup_exact(examples: list[Example], dropped: Counter[str]) -> list[Example]:
    kept: dict[str, Example] = {}
    for example in best_first(examples):
        if example.content_hash in kept:
            dropped["duplicate"] += 1
        else:
            kept[example.content_hash] = example
    return list(kept.values())


def _minhash(text: str) -> MinHash:
    from datasketch import MinHash

    words = _WORD.findall(text.lower())
    shingles = set(words) | {f"{a} {b}" for a, b in itertools.pairwise(words)}
    minhash = MinHash(num_perm=NUM_PERM, seed=1)
    minhash.update_batch([s.encode() for s in sorted(shingles)])
    return minhash


def dedup_near(examples: list[Example], threshold: float, dropped: Counter[str]) -> list[Example]:
    """Drop near-duplicates (threshold 0 or 1 turns this off: 1 = exact only)."""
    if threshold <= 0.0 or threshold >= 1.0 or len(examples) < 2:
        return list(examples)
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    kept: list[Example] = []
    hashes: dict[str, MinHash] = {}
    for index, example in enumerate(best_first(examples)):
        minhash = _minhash(example_text(example))
        neighbours = lsh.query(minhash)
        if any(hashes[n].jaccard(minhash) >= threshold for n in neighbours):
            dropped["near_duplicate"] += 1
            continue
        key = str(index)
        lsh.insert(key, minhash)
        hashes[key] = minhash
        kept.append(example)
    return kept
