"""Duplicates: exact (normalized content hash) and near (MinHash/LSH, datasketch).

Both keep the best-scored member: examples are visited best first (score, then a
stable key), and one is dropped when an already kept example has the same content
hash, or a Jaccard similarity of at least ``threshold`` between the word sets
of their texts (request and answer, tool calls included); MinHash LSH finds the
candidates, so this stays near-linear in the number of examples.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from typing import TYPE_CHECKING

import orjson

from mlx_rsi.records import Example

if TYPE_CHECKING:
    from datasketch import MinHash

NUM_PERM = 128
LSH_MARGIN = 0.2  # candidate threshold below the configured one
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


def shingles(text: str) -> set[str]:
    """The set of lower-cased words: robust to rewording and reordering of a request."""
    return set(_WORD.findall(text.lower()))


def _minhash(items: set[str]) -> MinHash:
    from datasketch import MinHash

    minhash = MinHash(num_perm=NUM_PERM, seed=1)
    minhash.update_batch([s.encode() for s in sorted(items)])
    return minhash


def dedup_near(examples: list[Example], threshold: float, dropped: Counter[str]) -> list[Example]:
    """Drop near-duplicates (threshold 0 or 1 turns this off: 1 = exact only).

    LSH finds candidates at a lower threshold (so pairs just above ``threshold`` are
    not missed by its banding); the exact Jaccard of the shingle sets decides.
    """
    if threshold <= 0.0 or threshold >= 1.0 or len(examples) < 2:
        return list(examples)
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=max(0.3, threshold - LSH_MARGIN), num_perm=NUM_PERM)
    kept: list[Example] = []
    sets: dict[str, set[str]] = {}
    for index, example in enumerate(best_first(examples)):
        items = shingles(example_text(example))
        minhash = _minhash(items)
        if any(_jaccard(sets[n], items) >= threshold for n in lsh.query(minhash)):
            dropped["near_duplicate"] += 1
            continue
        key = str(index)
        lsh.insert(key, minhash)
        sets[key] = items
        kept.append(example)
    return kept


def _jaccard(a: set[str], b: set[str]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 1.0
