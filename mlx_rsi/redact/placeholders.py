"""The typed placeholders a redaction leaves (``<SECRET:kind>``, ``<EMAIL>`` …).

No rule ever matches a placeholder, which makes redaction idempotent: redacting
redacted text changes nothing and counts nothing.
"""

from __future__ import annotations

import re


def secret_placeholder(kind: str) -> str:
    return f"<SECRET:{kind}>"


EMAIL = "<EMAIL>"


HOME = "<HOME>"


USER = "<USER>"


IMAGE = "<IMAGE>"


BASE64 = "<BASE64>"


PLACEHOLDER = re.compile(r"<(?:SECRET:[a-z0-9_]+|EMAIL|HOME|USER|IMAGE|BASE64)>")
