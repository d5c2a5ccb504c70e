"""Curation: sessions → scored, categorized, redacted, deduplicated training examples."""

from __future__ import annotations

from mlx_rsi.curate.redact import redact_session, redact_text

__all__ = ["redact_session", "redact_text"]
