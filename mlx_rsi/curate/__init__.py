"""Curation: stored sessions → scored, categorized, deduplicated training examples.

The stage (seed guide steps 6–9, made careful):

1. every turn the person typed becomes a candidate example (:mod:`.examples`);
2. its effectiveness score comes from the answer's outcome signals (:mod:`.score`)
   and its category from the configured rules (:mod:`.categorize`);
3. examples under ``curate.threshold`` (0.9) are dropped, then exact and near
   duplicates (:mod:`.dedup`), then the lowest-scored beyond a category's cap;
4. synthesis adds template variations, identity examples and, when enabled,
   model paraphrases (:mod:`mlx_rsi.synth`);
5. the result replaces the ``examples`` table (not with ``dry_run``).

Texts were redacted at ingest (:mod:`.redact`); curation counts the placeholders
each example carries, for the dataset manifest.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import orjson

from mlx_rsi.config import Config, CurateConfig
from mlx_rsi.curate.categorize import compile_categories
from mlx_rsi.curate.dedup import best_first, dedup_exact, dedup_near, stable_key
from mlx_rsi.curate.examples import count_turns, session_examples
from mlx_rsi.curate.score import score_signals
from mlx_rsi.errors import ConfigError
from mlx_rsi.records import Example, Session
from mlx_rsi.redact import redact_session, redact_text
from mlx_rsi.session_store import load_sessions
from mlx_rsi.workspace import Workspace, now_iso, transaction

__all__ = ["CurateResult", "curate", "curate_sessions", "redact_session", "redact_text"]

log = logging.getLogger(__name__)
_PLACEHOLDER = re.compile(r"<(SECRET:[a-z0-9_]+|EMAIL|HOME|USER|IMAGE|BASE64)>")


@dataclass
class CurateResult:
    """What curation kept and why it dropped the rest."""

    sessions: int = 0
    interactions: int = 0  # prompts the person typed (each opens an interaction), all sessions
    examples: list[Example] = field(default_factory=list)  # kept + synthesized
    dropped: Counter[str] = field(default_factory=Counter)
    dry_run: bool = False

    @property
    def high_quality(self) -> int:
        return sum(1 for e in self.examples if e.origin == "session")

    def by_category(self) -> Counter[str]:
        return Counter(e.category for e in self.examples if e.origin == "session")

    def by_origin(self) -> Counter[str]:
        return Counter(e.origin for e in self.examples)

    def summary(self) -> str:
        """One line in the seed guide's spirit (step 7's three prints, plus the drops)."""
        categories = ", ".join(f"{c} {n}" for c, n in sorted(self.by_category().items()))
        origins = self.by_origin()
        extra = ", ".join(
            f"{origins[o]} {o}"
            for o in ("variation", "identity", "replay", "paraphrase")
            if origins[o]
        )
        dropped = ", ".join(f"{r} {n}" for r, n in sorted(self.dropped.items())) or "none"
        prefix = "curate (dry run)" if self.dry_run else "curate"
        return (
            f"{prefix}: {self.interactions} interactions in {self.sessions} sessions → "
            f"{self.high_quality} high-quality examples"
            + (f" (+{extra})" if extra else "")
            + f"; categories: {categories or 'none'}; dropped: {dropped}"
        )


def validate_curate_config(cfg: Config) -> None:
    """The curate section's rules (``CurateConfig.problems``) for a config built in code."""
    problems = [f"curate.{text}" for _, text in cfg.curate.problems()]
    if not 0.0 <= cfg.curate.threshold <= 1.0:
        problems.append(f"curate.threshold must be between 0 and 1, got {cfg.curate.threshold}")
    if problems:
        raise ConfigError("; ".join(problems), hint="fix the curate section of the config")


def curate(ws: Workspace, cfg: Config, *, dry_run: bool = False) -> CurateResult:
    """Curate every stored session; store the examples unless ``dry_run``."""
    validate_curate_config(cfg)
    conn = ws.store()
    try:
        result = curate_sessions(load_sessions(conn), cfg, synthesize=_synthesizer(ws, cfg))
        result.dry_run = dry_run
        if not dry_run:
            store_examples(conn, result.examples)
    finally:
        conn.close()
    return result


def curate_sessions(
    sessions: Iterable[Session],
    cfg: Config,
    *,
    synthesize: Callable[[list[Example]], list[Example]] | None = None,
) -> CurateResult:
    """The pure part of :func:`curate`: sessions in, examples and drop counts out."""
    validate_curate_config(cfg)
    categorizer = compile_categories(cfg.curate.categories)
    result = CurateResult()
    candidates: list[Example] = []
    for session in sessions:
        result.sessions += 1
        result.interactions += count_turns(session)
        for example in session_examples(session, cfg.curate, result.dropped):
            example.score = score_signals(example.signals, cfg.curate.score_rules)
            example.category = categorizer.category(_request(example))
            example.redactions = count_placeholders(example)
            candidates.append(example)
    kept = []
    for example in candidates:
        if example.score >= cfg.curate.threshold:
            kept.append(example)
            continue
        result.dropped["below_threshold"] += 1
        log.debug("below threshold (%.2f): %.80r", example.score, _request(example))
    kept = dedup_exact(kept, result.dropped)
    kept = dedup_near(kept, cfg.curate.near_duplicate_threshold, result.dropped)
    kept = apply_caps(kept, cfg.curate, result.dropped)
    kept = sorted(kept, key=stable_key)
    extra = synthesize(kept) if synthesize is not None else []
    result.examples = kept + extra
    result.dropped = +result.dropped  # drop zero counts
    log.info("%s", result.summary())
    return result


def _synthesizer(ws: Workspace, cfg: Config) -> Callable[[list[Example]], list[Example]]:
    def run(examples: list[Example]) -> list[Example]:
        from mlx_rsi.synth import synthesize

        return synthesize(ws, cfg, examples)

    return run


def _request(example: Example) -> str:
    users = [m for m in example.messages if m.get("role") == "user"]
    return str(users[-1].get("content") or "") if users else ""


def count_placeholders(example: Example) -> dict[str, int]:
    """Placeholder kind → count in the example's messages (``secret:github_token``, ``email``)."""
    counts: Counter[str] = Counter()
    text = orjson.dumps(example.messages).decode()
    for match in _PLACEHOLDER.finditer(text):
        counts[match.group(1).lower()] += 1
    return dict(sorted(counts.items()))


def apply_caps(examples: list[Example], cfg: CurateConfig, dropped: Counter[str]) -> list[Example]:
    """Keep at most ``category_caps[c]`` examples of category c, the best-scored ones."""
    if not cfg.category_caps:
        return examples
    taken: Counter[str] = Counter()
    kept = []
    for example in best_first(examples):
        cap = cfg.category_caps.get(example.category)
        if cap is not None and taken[example.category] >= cap:
            dropped["category_cap"] += 1
            continue
        taken[example.category] += 1
        kept.append(example)
    return kept


def store_examples(conn: sqlite3.Connection, examples: list[Example]) -> None:
    """Replace the ``examples`` table with this curation's examples (one transaction)."""
    stamp = now_iso()
    rows = [
        (
            e.content_hash,
            e.session_id,
            e.origin,
            e.category,
            e.score,
            orjson.dumps(e.to_dict(), option=orjson.OPT_NON_STR_KEYS).decode(),
            stamp,
        )
        for e in examples
    ]
    with transaction(conn):
        conn.execute("DELETE FROM examples")
        conn.executemany(
            "INSERT OR IGNORE INTO examples"
            " (content_hash, session_id, origin, category, score, data, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


def load_examples(conn: sqlite3.Connection) -> list[Example]:
    """The examples the last curation stored, in their stored order."""
    rows = conn.execute("SELECT data FROM examples ORDER BY id").fetchall()
    return [Example.from_dict(orjson.loads(r[0])) for r in rows]
