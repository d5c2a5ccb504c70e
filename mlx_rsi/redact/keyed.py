"""Secrets known by their name: ``NAME=value``, ``name: value``, ``"name": "value"``.

Decides whether a name looks secret (``DB_PASSWORD``, ``apiKey``; not ``sessionId``,
``cache_key``) and whether its value looks like a literal secret rather than code, a
placeholder or a model name; finds the candidate lines (a secret keyword followed by
an assignment) that the detect-secrets plugins then scan.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from mlx_rsi.redact.placeholders import PLACEHOLDER, secret_placeholder

_SECRET_NAME_PARTS = frozenset(
    {
        "SECRET",
        "SECRETS",
        "PASSWORD",
        "PASSWD",
        "PASSPHRASE",
        "PASS",
        "PWD",
        "TOKEN",
        "KEY",
        "APIKEY",
        "AUTH",
        "CREDENTIAL",
        "CREDENTIALS",
        "PAT",
        "PRIVATE",
        "SIGNATURE",
        "COOKIE",
        "SESSION",
        "DSN",
    }
)


_NOT_SECRET_VALUES = frozenset(
    {"true", "false", "none", "null", "yes", "no", "on", "off", "", "undefined", "nil"}
    | {"value", "changeme", "secret", "password", "token", "example", "placeholder"}
    | {"redacted", "dummy", "xxx", "todo", "tbd", "required", "optional", "hidden"}
)


# A value shown instead of one: "sk-...", "xxxx", "****", "your_api_key_here".
_ELIDED = re.compile(r".*(?:\.\.\.|…)|[xX*•.]{4,}|(?i:(?:your|my)[-_ ].*)|.*(?i:_here)")


# A name ending in one of these names something about a secret, not the secret:
# ``sessionId``, ``token_type``, ``secret_name``, ``api_key_url``, ``token_model``.
_NOT_SECRET_LAST_PARTS = frozenset(
    {
        *("ID", "IDS", "UUID", "GUID", "NAME", "NAMES", "TYPE", "TYPES", "KIND", "MODEL"),
        *("URL", "URI", "URLS", "PATH", "FILE", "FILES", "DIR", "COUNT", "LENGTH", "LEN"),
        *("SIZE", "MODE", "FORMAT", "FIELD", "PREFIX", "SUFFIX", "HEADER", "PARAM", "VAR"),
        *("ENV", "LABEL", "TTL", "EXPIRY", "EXPIRES", "EXPIRATION", "VERSION", "INDEX"),
        *("LIMIT", "MAX", "MIN", "NUM", "NUMBER", "ENABLED", "DISABLED", "REQUIRED"),
        *("LOCATION", "HOST", "PORT", "REGION", "ENDPOINT", "PROVIDER", "ALGORITHM", "TIMEOUT"),
        *("STORE", "MANAGER", "SERVICE", "HELPER", "STATUS", "STATE", "CACHE", "SCOPE"),
        *("REF", "REFS", "REFERENCE", "ARN", "VAULT", "BUCKET", "TABLE", "QUEUE", "TOPIC"),
        *("ROLE", "POLICY", "SOCK", "SOCKET", "ISSUER", "AUDIENCE", "ALGO", "FINGERPRINT"),
    }
)


# A key of data, not a key that opens something: ``cache_key``, ``sort_key``,
# ``public_key`` (only when "key" is the name's one secret-looking part).
_DATA_KEY_PARTS = frozenset(
    {
        *("CACHE", "HASH", "CHECKSUM", "DIGEST", "IDEMPOTENCY", "PARTITION", "SORT", "PRIMARY"),
        *("FOREIGN", "ROUTING", "SHARD", "LOOKUP", "MAP", "DICT", "DEDUP", "GROUP", "UNIQUE"),
        *("COMPOSITE", "OBJECT", "PUBLIC", "HOT", "SHORTCUT", "KEYBOARD", "REACT", "LIST", "ROW"),
        *("COLUMN", "REDIS", "STATE", "QUERY", "SEARCH", "LOCK", "FOLDER", "GPG", "PGP"),
        *("PUBLISHABLE", "PUB", "SITE", "RECAPTCHA", "TURNSTILE"),
    }
)


# Secret parts that name an identifier when the value is a UUID (a session id).
_ID_LIKE_PARTS = frozenset({"SESSION", "COOKIE"})


@functools.lru_cache(maxsize=4096)
def is_secret_name(name: str) -> bool:
    """True for names like ``OPENAI_API_KEY``, ``dbPassword``, ``x-auth-token``."""
    parts = _name_parts(name)
    if not parts or parts[-1] in _NOT_SECRET_LAST_PARTS:
        return False
    secret = {part for part in parts if part in _SECRET_NAME_PARTS}
    if secret == {"KEY"} and any(part in _DATA_KEY_PARTS for part in parts):
        return False
    return bool(secret) or "PASSWORD" in name.upper()


UUID_PATTERN = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


def secret_under(name: str, value: str) -> bool:
    """``value`` under the key ``name`` is a secret by its name (a UUID under ``session``
    is an id; under ``api_key`` it is a key)."""
    if not is_secret_name(name):
        return False
    if UUID_PATTERN.fullmatch(value.strip()):
        parts = {p for p in _name_parts(name) if p in _SECRET_NAME_PARTS}
        return not parts <= _ID_LIKE_PARTS
    return True


def plausible_secret_value(value: str) -> bool:
    """A value worth redacting: not a boolean, a short number, a template or a reference."""
    stripped = value.strip().strip("'\"")
    if stripped.lower() in _NOT_SECRET_VALUES or len(stripped) < 4:
        return False
    if stripped.isdigit() and len(stripped) < 12:
        return False
    if _ELIDED.fullmatch(stripped):
        return False
    return not stripped.startswith(("$", "<", "%", "{{", "os.environ", "process.env"))


# An expression: a.b, a?.b, a!.b, a::b, a->b, calls and subscripts (a(…), a[…]).
_CODE_VALUE = re.compile(
    r"[A-Za-z_$][\w$]*(?:(?:\?\.|!\.|\.|::|->)[A-Za-z_$][\w$]*|\([^()\n]*\)|\[[^\[\]\n]*\]|!)*"
)


_IDENTIFIER = re.compile(r"[A-Za-z_$][\w$]*")


def _is_code(value: str) -> bool:
    """An unquoted value that is an expression (``dashboardData?.organizationUrlKey``,
    ``get_key()``, ``os.environ["X"]``), not a token that happens to hold dots
    (``hvs.CAES…``): no part of it is a long generated run."""
    if value[:1] in "([{":
        return True
    if _IDENTIFIER.fullmatch(value) or not _CODE_VALUE.fullmatch(value):
        return False
    return not any(_generated_run(part) for part in _IDENTIFIER.findall(value))


def _generated_run(part: str) -> bool:
    return len(part) >= 16 and looks_generated(part) and not _wordy(part)


_SEGMENTS = re.compile(r"[-_./:@ ]+")


_WORD = re.compile(r"(?:[A-Z]?[a-z]+|[A-Z]+)(?:[A-Z][a-z]+)*[0-9]{0,4}[a-z]{0,3}")


_CONSONANTS = re.compile(r"[^aeiouy0-9]{5}", re.IGNORECASE)


def name_like(value: str) -> bool:
    """Segments that are words, numbers or short tags (``claude-3-5-sonnet-20241022``,
    ``meta-llama/Llama-3.1-8B-Instruct``, ``user:1234:profile``): a name, not a key."""
    parts = [part for part in _SEGMENTS.split(value) if part]
    if len(parts) < 2:
        return False
    words = 0
    for part in parts:
        if part.isdigit() or len(part) <= 5:
            continue
        if not _WORD.fullmatch(part) or _CONSONANTS.search(part):
            return False
        words += 1
    return words >= 1


_STRONG_NAME_PARTS = frozenset(
    {"SECRET", "SECRETS", "PASSWORD", "PASSWD", "PASSPHRASE", "PASS", "PWD", "CREDENTIAL"}
    | {"CREDENTIALS"}
)


_ENV_LINE = re.compile(r"[ \t]*(?:export[ \t]+|set[ \t]+)?[A-Z][A-Z0-9_]*=")


@functools.lru_cache(maxsize=4096)
def _name_parts(name: str) -> tuple[str, ...]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return tuple(re.split(r"[^A-Za-z0-9]+", spaced.upper()))


def _keyed_accept(match: re.Match[str], line: str) -> bool:
    """``name = value`` is a secret when the name looks secret and the value looks literal.

    Env lines (``NAME=value``) and strong names (password, secret …) take any literal
    value; weak names (key, token, auth …) need a value with a digit and a letter, as
    generated keys have, so ``token: Token`` or ``key = "APPDATA"`` stay.
    """
    value = match.group(2)
    bare = value.strip("\"'")
    if not secret_under(match.group(1), bare) or not plausible_secret_value(bare):
        return False
    quoted = value[:1] in "\"'"
    if any(c.isspace() for c in bare) or (not quoted and _is_code(bare)):
        return False
    if line[match.end() : match.end() + 1] in ("(", "[", "."):
        return False
    if _ENV_LINE.match(line, 0) and match.start() == line.find(match.group(1)):
        return True
    strong = any(part in _STRONG_NAME_PARTS for part in _name_parts(match.group(1)))
    if strong and (quoted or not bare.isidentifier()):
        return True
    if name_like(bare):
        return False  # user:1234:profile, claude-3-5-sonnet-20241022
    if not quoted and bare.isidentifier() and _wordy(bare):
        return False  # a type or variable name: Sam3TrackerSession, max_tokens_v2
    if _name_parts(match.group(1)) == ("KEY",) and len(bare) < 16:
        return False  # {"key": "item7"}: a bare "key" names data more often than secrets
    return looks_generated(bare)


_WORDS = re.compile(r"[A-Z]?[a-z]{3,}")


def _wordy(value: str) -> bool:
    """Mostly made of words of 3+ letters, as names are and random keys are not."""
    words = _WORDS.findall(value)
    return len(words) >= 2 and sum(map(len, words)) >= 0.6 * len(value)


def looks_generated(value: str) -> bool:
    """Has a digit and a letter, or is a long mixed-case run that is not an identifier."""
    has_digit = any(c.isdigit() for c in value)
    has_alpha = any(c.isalpha() for c in value)
    if has_digit and has_alpha:
        return True
    mixed_case = any(c.isupper() for c in value) and any(c.islower() for c in value)
    return len(value) >= 20 and mixed_case and not value.isidentifier()


# ``NAME=value``, ``name: value``, ``"name": "value"``, ``name := value`` (one line);
# run only on candidate lines (a secret keyword followed by an assignment).
KEYED = re.compile(
    r"(?<![A-Za-z0-9_.\-<])(?:export[ \t]+)?[\"']?([A-Za-z_][A-Za-z0-9_.\-]*)[\"']?"
    r"[ \t]*(?::=|=>|=|:)[ \t]*(\"[^\"\n<>]*\"|'[^'\n<>]*'|[^\s<>\"',;()\[\]{}]+)"
)


KEYWORDS = (
    "pass",
    "pwd",
    "secret",
    "token",
    "key",
    "auth",
    "credential",
    "private",
    "dsn",
    "cookie",
    "session",
)


ASSIGNMENT = re.compile(
    r"(?:pass|pwd|secret|token|key|auth|credential|private|dsn|cookie|session)"
    r"[\w\-\"'\]]*\s*(?::=|=>|[:=])"
)


# ASSIGNMENT within one line (never across a newline), matched where a keyword starts.
ASSIGNMENT_AT = re.compile(ASSIGNMENT.pattern.replace(r"\s*", r"[^\S\n]*").encode())


def candidate_lines(low: str) -> list[tuple[int, int]]:
    """(start, end) of each line holding a secret keyword, in order, via fast ``find``."""
    starts: set[int] = set()
    for word in KEYWORDS:
        position = low.find(word)
        while position != -1:
            line_start = low.rfind("\n", 0, position) + 1
            starts.add(line_start)
            line_end = low.find("\n", position)
            if line_end == -1:
                break
            position = low.find(word, line_end)
    return line_spans(low, starts)


def lines_at(low: str, positions: Iterable[int]) -> set[int]:
    """Start of the line around each position (keywords found by the pre-scan)."""
    starts: set[int] = set()
    line_end = -1
    for position in sorted(positions):
        if position < line_end:
            continue  # same line as the previous keyword
        starts.add(low.rfind("\n", 0, position) + 1)
        line_end = low.find("\n", position)
        if line_end == -1:
            break
    return starts


def line_spans(low: str, starts: Iterable[int]) -> list[tuple[int, int]]:
    """(start, end) of the lines starting at ``starts``; long lines cut in pieces."""
    spans = []
    for start in sorted(starts):
        end = low.find("\n", start)
        end = len(low) if end == -1 else end
        if end - start <= MAX_SEGMENT:
            spans.append((start, end))
        else:
            spans.extend(_segments(low, start, end))
    return spans


MAX_SEGMENT = 1000  # a longer line (minified JSON, a log line) is scanned in pieces


_SEPARATORS = ",;{}"  # never a space: "name": value may straddle it


def _segments(low: str, start: int, end: int) -> list[tuple[int, int]]:
    """Pieces of a long line, cut after a separator, that hold a secret keyword.

    Keeps the scan linear: detect-secrets' filters look at the whole "line" for
    every finding, which is quadratic on a megabyte of one-line JSON.
    """
    pieces = []
    position = start
    while position < end:
        cut = min(end, position + MAX_SEGMENT)
        if cut < end:
            soft = max(low.rfind(c, position + MAX_SEGMENT // 2, cut) for c in _SEPARATORS)
            cut = soft + 1 if soft > position else cut
        if any(word in low[position:cut] for word in KEYWORDS):
            pieces.append((position, cut))
        position = cut
    return pieces


# ``NAME=value`` as a shell line or .env file has it: an upper-case name opening the
# line (or after ``export``/``set``), no spaces around "=".
_ENV_ASSIGN = re.compile(
    r"(?:[ \t]*(?:export|set)[ \t]+)?([A-Z][A-Z0-9_]*)=(?![\"'`])([^\s<>]+)(?=\s|$)"
)


def _env_value(line: str) -> tuple[int, int] | None:
    """Span of the value of ``NAME=value`` opening the line, when it is a secret.

    A shell or ``.env`` value runs to the next space, whatever it holds (a Django
    key has ``(``, ``#``, ``!``); a call or an expression is code, not a value.
    """
    match = _ENV_ASSIGN.match(line)
    if match is None:
        return None
    value = match.group(2)
    if not secret_under(match.group(1), value) or not plausible_secret_value(value):
        return None
    if _is_code(value) or PLACEHOLDER.search(value) or value.endswith(","):
        return None
    return match.span(2)


def _apply_env(line: str, counts: Counter[str], found: dict[str, str] | None) -> str:
    span = _env_value(line)
    if span is None:
        return line
    start, end = span
    counts["keyed_secret"] += 1
    if found is not None and end - start >= 8:
        found.setdefault(line[start:end], "keyed_secret")
    return line[:start] + secret_placeholder("keyed_secret") + line[end:]


def apply_keyed(line: str, counts: Counter[str], found: dict[str, str] | None) -> str:
    line = _apply_env(line, counts, found)

    def substitute(match: re.Match[str]) -> str:
        if not _keyed_accept(match, line):
            return match.group(0)
        value = match.group(2)
        quote = value[0] if value[:1] in "\"'" else ""
        bare = value.strip("\"'")
        counts["keyed_secret"] += 1
        if found is not None and len(bare) >= 8:
            found.setdefault(bare, "keyed_secret")
        start = match.start(2) - match.start()
        whole = match.group(0)
        return whole[:start] + quote + secret_placeholder("keyed_secret") + quote

    return KEYED.sub(substitute, line)


def hidden_by_key(key: Any, value: str) -> bool:
    return (
        isinstance(key, str)
        and secret_under(key, value)
        and plausible_secret_value(value)
        and "\n" not in value
        and not PLACEHOLDER.fullmatch(value)
    )
