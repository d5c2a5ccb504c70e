"""The detect-secrets adapter: its default plugins, with gates and our filters.

The plugins run only on candidate lines (:mod:`.keyed`), never through
``scan_line`` (whose eager mode flags every identifier). A gate derived from a
plugin's own patterns skips lines it cannot match; findings pass detect-secrets'
heuristics and ours (not a digest, a name or the value of a non-secret key), and a
format plugin's match is grown to the whole token.

detect-secrets is imported inside the functions that need it: importing it takes
most of a second (it pulls in ``requests``), and ``mlx-rsi --help`` must stay fast.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from mlx_rsi.redact.keyed import (
    UUID_PATTERN,
    is_secret_name,
    looks_generated,
    name_like,
    plausible_secret_value,
    secret_under,
)
from mlx_rsi.redact.placeholders import PLACEHOLDER

_DETECT_SECRETS_SKIP = frozenset({"IPPublicDetector"})


DS_KINDS = {
    "Secret Keyword": "keyword_secret",
    "Base64 High Entropy String": "high_entropy",
    "Hex High Entropy String": "high_entropy",
}


_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def whole_token(value: str, line: str, kind: str) -> str:
    """A format plugin's match grown to the whole token around it: a pattern written
    for an older, shorter format (Discord's third part) must not leave a tail."""
    if kind in ("keyword_secret", "high_entropy"):
        return value
    start = line.find(value)
    if start == -1:
        return value
    end = start + len(value)
    while start > 0 and line[start - 1] in _TOKEN_CHARS:
        start -= 1
    while end < len(line) and line[end] in _TOKEN_CHARS:
        end += 1
    return line[start:end]


def keep_finding(value: str, line: str, kind: str) -> bool:
    """detect-secrets' own heuristics (sequential, uuid, templated, $-prefixed) + ours."""
    if len(value) < 4 or "<" in value or ">" in value or PLACEHOLDER.search(value):
        return False
    if is_secret_name(value):
        return False
    if kind == "high_entropy" and not (_random_string(value) and _secret_slot(value, line)):
        return False
    return not any(check(value, line) for check in _heuristics())


_KEY_BEFORE = re.compile(
    r"[\"'`]?([A-Za-z_][\w.\-]*)[\"'`]?[ \t]*(?::=|=>|[:=])[ \t]*[\[(]?[ \t]*[\"'`]?$"
)


def _secret_slot(value: str, line: str) -> bool:
    """A quoted string found on a keyword line is a secret unless it is the value of
    a key that is not secret-looking (``"id": "msg_01…"``, ``"model": "…"``)."""
    start = line.find(value)
    if start == -1:
        return True
    key = _KEY_BEFORE.search(line, max(0, start - 80), start)
    return key is None or secret_under(key.group(1), value)


_HEX = re.compile(r"[0-9a-fA-F]+")


_DIGEST = re.compile(r"sha(?:1|224|256|384|512)-|md5-|[0-9a-f]{7,64}$")


def _random_string(value: str) -> bool:
    """A high-entropy string worth hiding: generated-looking, not a digest (hex, or
    a lockfile's ``sha512-…`` integrity), not a name (model, package, path)."""
    if len(value) < 16 or not looks_generated(value) or _HEX.fullmatch(value):
        return False
    return not (_DIGEST.match(value) or name_like(value) or UUID_PATTERN.fullmatch(value))


@functools.lru_cache(maxsize=1)
def _heuristics() -> tuple[Callable[[str, str], bool], ...]:
    from detect_secrets.filters import heuristic as h

    return (
        lambda secret, _line: bool(h.is_sequential_string(secret)),
        lambda secret, _line: bool(h.is_potential_uuid(secret)),
        lambda secret, _line: bool(h.is_templated_secret(secret)),
        lambda secret, _line: bool(h.is_prefixed_with_dollar_sign(secret)),
        lambda _secret, line: bool(h.is_indirect_reference(line)),
        lambda secret, _line: not plausible_secret_value(secret),
    )


@functools.lru_cache(maxsize=1)
def load_plugins() -> list[Any]:
    """detect-secrets' default plugins (without public-IP detection), instantiated once."""
    from detect_secrets.settings import default_settings, get_plugins

    with default_settings():
        return [p for p in get_plugins() if type(p).__name__ not in _DETECT_SECRETS_SKIP]


# A cached line result: (new line, counts per kind, found values → kind), in order.
LineResult = tuple[str, tuple[tuple[str, int], ...], tuple[tuple[str, str], ...]]


Gate = Callable[[str], bool]


def plugin_gate(plugin: Any) -> Gate | None:
    """A cheap test a line must pass for ``plugin`` to find anything in it, or None.

    Derived from detect-secrets' own patterns and checked against them, so a gate
    never hides a finding: the keyword plugin (as ``analyze_string`` runs it) needs
    a quote and one of its denylist words; the high-entropy plugins need a quote.
    Plugins whose patterns do not look as expected get no gate (always run).
    """
    from detect_secrets.plugins import keyword
    from detect_secrets.plugins.high_entropy_strings import HighEntropyStringsPlugin

    if type(plugin) is keyword.KeywordDetector and _keyword_needs_quote():
        words = re.compile("|".join(keyword.DENYLIST), re.IGNORECASE)
        return lambda line: _has_quote(line) and words.search(line) is not None
    if isinstance(plugin, HighEntropyStringsPlugin) and plugin.regex.pattern.startswith(
        "([\\'\"])"
    ):
        return lambda line: "'" in line or '"' in line
    return None


def _has_quote(line: str) -> bool:
    return "'" in line or '"' in line or "`" in line


def _keyword_needs_quote() -> bool:
    """Every pattern the keyword plugin tries has a required quote and denylist group."""
    from detect_secrets.plugins import keyword

    quote = f"({keyword.QUOTE})"
    words = "(" + "|".join(keyword.DENYLIST) + ")"
    patterns = [rx.pattern for rx in keyword.QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP]
    return (
        keyword.QUOTE == "[\\'\"`]"
        and bool(patterns)
        and all(quote in p and words in p for p in patterns)
    )
