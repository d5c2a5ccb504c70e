"""Redaction: secrets, emails, home paths and user names out of every stored text.

Runs during ingest, before anything reaches the state store, so a secret seen once
is never written to the store, a dataset, a log line or a report. Each finding is
replaced by a typed placeholder (``<SECRET:github_token>``, ``<EMAIL>``, ``<HOME>``,
``<USER>``, ``<IMAGE>``, ``<BASE64>``) and counted by kind.

Speed matters (ingest reads hundreds of MB), so the work is layered:

1. **Anchored rules** (:data:`RULES`): each has literal anchors (``ghp_``, ``sk-``,
   ``-----BEGIN`` …) checked with ``in`` (fast C search) before its regex runs. They
   cover key formats detect-secrets lacks or gets wrong (``sk-ant-``, ``sk-proj-``,
   ``github_pat_``, PEM bodies across lines, URL credentials, bearer headers,
   ``.npmrc`` tokens, ``KEY=value`` env dumps of secret-looking names) and drop base64
   images and blobs.
2. **detect-secrets plugins** (``default_settings()``, minus the public-IP one) run only
   on *candidate lines*: lines where a secret keyword (password, token, key, secret,
   auth, credential …) is followed by an assignment. ``scan_line`` itself is not used:
   its eager mode flags every identifier as high-entropy and costs ~400 µs a line.
3. **Emails, home paths, user names**, each gated by its own anchor.

For a whole session (:func:`redact_session`, what ingest calls) one multi-literal
pass (Aho-Corasick, ``ahocorasick_rs``) over all its texts finds every anchor,
keyword and marker first (:class:`_SessionScan`), so each text runs only the stages
whose necessary condition it meets, and most texts run none. Candidate lines are
cached by content (:data:`LINE_CACHE_SIZE`), and two cheap tests derived from
detect-secrets' own patterns (a quote; a denylist word) skip plugins that could not
match a line. Every shortcut is a necessary condition of the stage it skips: the
output is the same as running every stage on every text.

Redaction is idempotent: placeholders never match a rule, so redacting redacted text
changes nothing and counts nothing.
"""

from __future__ import annotations

import fnmatch
import functools
import getpass
import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, count, repeat
from operator import add
from typing import TYPE_CHECKING, Any, NamedTuple

from mlx_rsi.errors import ConfigError

if TYPE_CHECKING:
    from mlx_rsi.config import CurateConfig
    from mlx_rsi.records import Session

# --------------------------------------------------------------------------- placeholders


def secret_placeholder(kind: str) -> str:
    return f"<SECRET:{kind}>"


EMAIL = "<EMAIL>"
HOME = "<HOME>"
USER = "<USER>"
IMAGE = "<IMAGE>"
BASE64 = "<BASE64>"

_PLACEHOLDER = re.compile(r"<(?:SECRET:[a-z0-9_]+|EMAIL|HOME|USER|IMAGE|BASE64)>")

# --------------------------------------------------------------------------- anchored rules

# Characters a secret value may contain in the rules below; never "<" or ">" so a
# placeholder is never taken for a value (idempotence).
_TOKEN = r"[A-Za-z0-9_\-]"
_PEM_BODY = r"[A-Za-z0-9+/=:,\-\s\\]"
_NOT_PEM_BODY = r"[^A-Za-z0-9+/=:,\-\s\\]"


@dataclass(frozen=True)
class Rule:
    """A regex run only when one of its anchors occurs in the text.

    An anchor is a literal (checked with ``in``) or, written ``re:<pattern>``, a
    regex with a literal prefix (one fast search instead of several ``in``).

    ``group`` is the capture group replaced by the placeholder (0 = the whole match;
    -1 = the first group that took part, for alternatives such as quoted or bare
    values), so context such as ``Authorization: Bearer`` or ``API_KEY=`` is kept.
    ``accept`` (given the value) rejects look-alikes the regex cannot tell apart;
    such a rule's value must also look like a literal (not ``$VAR`` or ``<…>``).
    Anchors of one or two characters (``AC``, ``SK``) are matched case-sensitively.
    """

    kind: str
    anchors: tuple[str, ...]
    pattern: re.Pattern[str]
    group: int = 0
    placeholder: str = ""
    accept: Callable[[str], bool] | None = None

    def replacement(self) -> str:
        return self.placeholder or secret_placeholder(self.kind)


def _rule(
    kind: str,
    anchors: Iterable[str],
    pattern: str,
    *,
    group: int = 0,
    placeholder: str = "",
    flags: int = 0,
    accept: Callable[[str], bool] | None = None,
) -> Rule:
    return Rule(kind, tuple(anchors), re.compile(pattern, flags), group, placeholder, accept)


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


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def secret_under(name: str, value: str) -> bool:
    """``value`` under the key ``name`` is a secret by its name (a UUID under ``session``
    is an id; under ``api_key`` it is a key)."""
    if not is_secret_name(name):
        return False
    if _UUID.fullmatch(value.strip()):
        parts = {p for p in _name_parts(name) if p in _SECRET_NAME_PARTS}
        return not parts <= _ID_LIKE_PARTS
    return True


def _plausible_secret_value(value: str) -> bool:
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
    return len(part) >= 16 and _looks_generated(part) and not _wordy(part)


_SEGMENTS = re.compile(r"[-_./:@ ]+")
_WORD = re.compile(r"(?:[A-Z]?[a-z]+|[A-Z]+)(?:[A-Z][a-z]+)*[0-9]{0,4}[a-z]{0,3}")
_CONSONANTS = re.compile(r"[^aeiouy0-9]{5}", re.IGNORECASE)


def _name_like(value: str) -> bool:
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
    if not secret_under(match.group(1), bare) or not _plausible_secret_value(bare):
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
    if _name_like(bare):
        return False  # user:1234:profile, claude-3-5-sonnet-20241022
    if not quoted and bare.isidentifier() and _wordy(bare):
        return False  # a type or variable name: Sam3TrackerSession, max_tokens_v2
    if _name_parts(match.group(1)) == ("KEY",) and len(bare) < 16:
        return False  # {"key": "item7"}: a bare "key" names data more often than secrets
    return _looks_generated(bare)


_WORDS = re.compile(r"[A-Z]?[a-z]{3,}")


def _wordy(value: str) -> bool:
    """Mostly made of words of 3+ letters, as names are and random keys are not."""
    words = _WORDS.findall(value)
    return len(words) >= 2 and sum(map(len, words)) >= 0.6 * len(value)


def _looks_generated(value: str) -> bool:
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


# A command-line argument: quoted (group 1 or 2) or bare (group 3).
_ARG = r"(?:'([^'\n]+)'|\"([^\"\n]+)\"|(?!-)([^\s'\"<>;|&\])}]+))"
_METAVAR = re.compile(r"[A-Z][A-Z0-9_\-]*|\*+|x+|\.\.\.")


def _cli(value: str) -> bool:
    """A password given on a command line, not a placeholder (``TOKEN``, ``***``)."""
    return not _METAVAR.fullmatch(value) and not value.startswith(("$", "%", "{"))


# Tokens known by their prefix: (kind, prefix, the body's regex).
_PREFIXED = (
    ("databricks_token", "dapi", "[0-9a-f]{32}(?:-[0-9])?"),
    ("digitalocean_token", "dop_v1_", "[0-9a-f]{64}"),
    ("digitalocean_token", "doo_v1_", "[0-9a-f]{64}"),
    ("linear_api_key", "lin_api_", "[A-Za-z0-9]{40}"),
    ("grafana_token", "glsa_", "[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}"),
    ("grafana_token", "glc_", "[A-Za-z0-9+/]{32,}={0,2}"),
    ("slack_token", "xapp-", "[0-9]+-[A-Za-z0-9]+-[0-9]+-[A-Za-z0-9]+"),
    ("age_secret_key", "AGE-SECRET-KEY-1", "[0-9A-Z]{58}"),
    ("google_oauth_token", "ya29.", "[A-Za-z0-9_\\-]{30,}"),
    ("groq_key", "gsk_", "[A-Za-z0-9]{48,}"),
    ("replicate_token", "r8_", "[A-Za-z0-9]{37}"),
    ("perplexity_key", "pplx-", "[A-Za-z0-9]{40,}"),
    ("xai_key", "xai-", "[A-Za-z0-9]{70,}"),
    ("nvidia_key", "nvapi-", "[A-Za-z0-9_\\-]{60,}"),
    ("openrouter_key", "sk-or-v1-", "[0-9a-f]{64}"),
    ("sentry_token", "sntrys_", "[A-Za-z0-9+/=_]{40,}"),
    ("postman_key", "PMAK-", "[0-9a-f]{24}-[0-9a-f]{34}"),
    ("doppler_token", "dp.st.", "[A-Za-z0-9_\\-.]{40,}"),
    ("atlassian_token", "ATATT3", "[A-Za-z0-9_\\-=]{100,}"),
    ("figma_token", "figd_", "[A-Za-z0-9_\\-]{40,}"),
    ("new_relic_key", "NRAK-", "[A-Z0-9]{27}"),
    ("planetscale_token", "pscale_tkn_", "[A-Za-z0-9_\\-.]{32,}"),
    ("fly_token", "FlyV1 ", "fm[12]_[A-Za-z0-9+/=_,\\-]{40,}"),
)

RULES: tuple[Rule, ...] = (
    _rule(
        "private_key",
        ["-----BEGIN"],
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
        rf"{_PEM_BODY}{{16,}}?"
        rf"(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|(?={_NOT_PEM_BODY})|\Z)",
    ),
    _rule(
        "image",
        ["data:image/"],
        r"data:image/[A-Za-z0-9.+\-]+;base64,[A-Za-z0-9+/=\s\\]+",
        placeholder=IMAGE,
    ),
    _rule("anthropic_key", ["sk-ant-"], rf"sk-ant-{_TOKEN}{{20,}}"),
    _rule(
        "openai_key",
        ["sk-"],
        rf"(?<![A-Za-z0-9_\-])sk-(?:proj-|svcacct-|admin-)?(?={_TOKEN}*[0-9]){_TOKEN}{{20,}}",
    ),
    _rule(
        "stripe_key",
        ["_live_", "_test_"],
        r"(?<![A-Za-z0-9])(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}",
    ),
    _rule(
        "github_token",
        ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"],
        r"(?<![A-Za-z0-9])gh[pousr]_[A-Za-z0-9]{30,}",
    ),
    _rule("github_token", ["github_pat_"], r"github_pat_[A-Za-z0-9_]{22,}"),
    _rule("gitlab_token", ["glpat-"], r"glpat-[A-Za-z0-9_\-]{20,}"),
    _rule("huggingface_token", ["hf_"], r"(?<![A-Za-z0-9_])hf_[A-Za-z0-9]{30,}"),
    _rule(
        "aws_access_key",
        ["AKIA", "ASIA", "ABIA", "ACCA", "A3T"],
        r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}(?![A-Z0-9])",
    ),
    _rule("google_api_key", ["AIza"], r"AIza[0-9A-Za-z_\-]{35}"),
    _rule("slack_token", ["xox"], r"xox[abposr]-[A-Za-z0-9\-]{10,}"),
    _rule(
        "slack_webhook", ["hooks.slack.com"], r"https://hooks\.slack\.com/services/[A-Za-z0-9_/]+"
    ),
    _rule("npm_token", ["npm_"], r"(?<![A-Za-z0-9_])npm_[A-Za-z0-9]{30,}"),
    _rule(
        "npm_token",
        ["_auth", "_password"],
        r"(?m)(?:^|(?<=:))(?:_authToken|_auth|_password)[ \t]*=[ \t]*([^\s<>\"']+)",
        group=1,
    ),
    _rule("pypi_token", ["pypi-"], r"pypi-[A-Za-z0-9_\-]{50,}"),
    _rule("sendgrid_key", ["SG."], r"SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}"),
    _rule("square_secret", ["sq0csp-"], r"sq0csp-[0-9A-Za-z\\\-_]{43}"),
    _rule("azure_storage_key", ["AccountKey="], r"AccountKey=([A-Za-z0-9+/=]{40,})", group=1),
    _rule(
        "telegram_bot_token",
        [":AA"],
        r"(?<![0-9])[0-9]{8,10}:AA[0-9A-Za-z_\-]{30,40}(?![0-9A-Za-z_\-])",
    ),
    _rule("jwt", ["eyJ"], r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*"),
    _rule(
        "vault_token", ["hvs.", "hvb.", "hvr."], r"(?<![A-Za-z0-9_])hv[sbr]\.[A-Za-z0-9_\-]{24,}"
    ),
    _rule(
        "shopify_token",
        ["shpat_", "shpss_", "shpca_", "shppa_"],
        r"(?<![A-Za-z0-9])shp(?:at|ss|ca|pa)_[a-fA-F0-9]{32}",
    ),
    *(
        _rule(kind, [prefix], rf"(?<![A-Za-z0-9_\-]){re.escape(prefix)}{body}(?![A-Za-z0-9_\-])")
        for kind, prefix, body in _PREFIXED
    ),
    _rule("mailchimp_key", ["-us"], r"(?<![A-Za-z0-9])[0-9a-f]{32}-us[0-9]{1,2}(?![A-Za-z0-9])"),
    _rule(
        "pgpass_password",
        [":5432:", ":*:"],
        r"(?m)^[^\s:#]+:(?:[0-9]+|\*):[^\s:]+:[^\s:]+:([^\s]+)$",
        group=1,
        accept=_cli,
    ),
    _rule(
        "netrc_password",
        ["machine"],
        r"\bmachine[ \t]+\S+(?:\s+(?:login|account|port)[ \t]+\S+)*\s+password[ \t]+([^\s]+)",
        group=1,
        accept=_cli,
    ),
    # Twilio: the auth token passed beside an account SID (Client("AC…", "…")), then SIDs.
    _rule(
        "twilio_auth_token",
        ["AC"],
        r"AC[0-9a-f]{32}[\"']?[ \t]*[,:;][ \t]*[\"']?([0-9a-f]{32})(?![0-9A-Za-z])",
        group=1,
    ),
    _rule("twilio_account_sid", ["AC"], r"(?<![A-Za-z0-9])AC[0-9a-f]{32}(?![0-9A-Za-z])"),
    _rule("twilio_api_key", ["SK"], r"(?<![A-Za-z0-9])SK[0-9a-f]{32}(?![0-9A-Za-z])"),
    _rule(
        "discord_bot_token",
        ["discord", "Discord", "DISCORD", ".run("],
        r"(?<![A-Za-z0-9_\-.])[MNO][A-Za-z0-9_\-]{23,25}\.[A-Za-z0-9_\-]{6}\."
        r"[A-Za-z0-9_\-]{27,40}(?![A-Za-z0-9_\-])",
    ),
    # Passwords on command lines: sshpass -p, mysql -pSECRET, docker login -p, --password=…
    _rule("cli_password", ["sshpass"], rf"\bsshpass[ \t]+-p[ \t]*{_ARG}", group=-1, accept=_cli),
    _rule(
        "cli_password",
        ["mysql", "mariadb"],
        rf"\b(?:mysql|mysqldump|mysqladmin|mariadb|mariadb-dump)\b[^\n|;&]*?[ \t]-p{_ARG}",
        group=-1,
        accept=_cli,
    ),
    _rule(
        "cli_password",
        ["login"],
        rf"\blogin\b[^\n|;&]*?[ \t]-p(?:[ \t]+){_ARG}",
        group=-1,
        accept=_cli,
    ),
    _rule(
        "cli_password",
        [
            "--pass",
            "--token",
            "--api-key",
            "--apikey",
            "--secret",
            "-password",
            "-token",
            "-secret",
        ],
        r"--(?:[a-z]+-)*(?:password|passwd|pass|token|api-key|apikey|secret)(?:[ \t]+|=)" + _ARG,
        group=-1,
        accept=_cli,
    ),
    _rule(
        "basic_auth",
        ["curl"],
        r"\bcurl\b[^\n|;&]*?[ \t](?:-u|--user)(?:[ \t]*|=)[\"']?([^\s'\"<>:]+:[^\s'\"<>]+)",
        group=1,
        accept=lambda value: _cli(value.split(":", 1)[1]),
    ),
    _rule("url_credentials", ["://"], r"://([^\s/:@<>'\"]+:[^\s/@<>'\"]+)@", group=1),
    _rule(
        "bearer_token",
        ["earer", "EARER", "uthorization", "UTHORIZATION"],
        r"(?i:authorization)[\"']?\s*[:=]\s*[\"']?(?:(?i:bearer|token|basic)\s+)?([^\s\"'<>,;]{8,})",
        group=1,
    ),
    _rule(
        "bearer_token", ["earer", "EARER"], r"(?i:bearer)\s+([A-Za-z0-9._~+/\-]{16,}=*)", group=1
    ),
)

# --------------------------------------------------------------------------- the redactor

# (anchor, its regex when written "re:…", indexes of the rules it gates)
_Check = tuple[str, "re.Pattern[str] | None", tuple[int, ...]]


def _present(check: _Check, text: str) -> bool:
    anchor, gate, _ = check
    return gate.search(text) is not None if gate is not None else anchor in text


_KEYWORDS = (
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
_ASSIGNMENT = re.compile(
    r"(?:pass|pwd|secret|token|key|auth|credential|private|dsn|cookie|session)"
    r"[\w\-\"'\]]*\s*(?::=|=>|[:=])"
)
# _ASSIGNMENT within one line (never across a newline), matched where a keyword starts.
_ASSIGNMENT_AT = re.compile(_ASSIGNMENT.pattern.replace(r"\s*", r"[^\S\n]*").encode())
_EMAIL_AT = re.compile(
    r"@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}\b"
)
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9._%+\-]+$")
_HOME_POSIX = re.compile(r"(?<![\w.])/(?:home|Users)/([A-Za-z0-9._\-]+)")
_HOME_WINDOWS = re.compile(
    r"[A-Za-z]:(?:\\\\|\\|/)(?:Users|Documents and Settings)(?:\\\\|\\|/)([^\\/\s\"'<>]+)"
)
_HOME_DASHED = re.compile(r"-(?:home|Users)-([A-Za-z0-9._]+)(?=-|$)")
_BASE64_RUN = "[A-Za-z0-9+/]{{{n},}}={{0,2}}"
# Login names that identify no one (defaults of images, CI runners, placeholders):
# never replaced as words (``ubuntu``, ``node`` and ``code`` are words too).
_COMMON_USERS = frozenset(
    {"root", "user", "admin", "ubuntu", "runner", "app", "dev", "test", "guest", "nobody", "node"}
    | {"shared", "public", "default", "vscode", "codespace", "codespaces", "gitpod", "jenkins"}
    | {"circleci", "travis", "vagrant", "ec2-user", "centos", "debian", "fedora", "postgres"}
    | {"mysql", "git", "www-data", "linuxbrew", "coder", "developer", "docker", "build"}
    | {"builder", "work", "workspace", "project", "projects", "code", "src", "data", "home"}
    | {"tmp", "username", "yourname", "your-username", "your_username", "name", "jovyan"}
    | {"me", "you", "dist", "lib", "opt", "local", "bin", "all users", "default user"}
)
# (marker, regex matching at the marker's position, its offset back to the regex start)
_HOME_USER_SEARCH = (
    ("/home/", _HOME_POSIX, 0),
    ("/Users/", _HOME_POSIX, 0),
    (":\\Users\\", _HOME_WINDOWS, 1),
    (":\\\\Users\\\\", _HOME_WINDOWS, 1),
    (":/Users/", _HOME_WINDOWS, 1),
    ("-home-", _HOME_DASHED, 0),
    ("-Users-", _HOME_DASHED, 0),
)


def home_users(texts: Sequence[str]) -> tuple[str, ...]:
    """The user names of the home folders in ``texts`` (``/home/jdoe/…`` → ``jdoe``),
    generic ones (``ubuntu``, ``runner``, ``vscode``) left out."""
    joined = "\n".join(texts)
    names: set[str] = set()
    for marker, pattern, back in _HOME_USER_SEARCH:
        position = joined.find(marker)
        while position != -1:
            match = pattern.match(joined, max(0, position - back))
            if match is not None:
                names.add(match.group(1))
            position = joined.find(marker, position + 1)
    return tuple(sorted(n for n in names if _identifying(n)))


def _identifying(name: str) -> bool:
    return (
        len(name) >= 3
        and name.lower() not in _COMMON_USERS
        and not name.startswith(".")
        and not name.isdigit()
    )


_DETECT_SECRETS_SKIP = frozenset({"IPPublicDetector"})


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


_DS_KINDS = {
    "Secret Keyword": "keyword_secret",
    "Base64 High Entropy String": "high_entropy",
    "Hex High Entropy String": "high_entropy",
}


@dataclass
class Redactor:
    """Compiled rules for one configuration; stateless apart from its caches."""

    emails: bool = True
    home_paths: bool = True
    usernames: tuple[str, ...] = ()
    email_allowlist: tuple[str, ...] = ()
    extra_rules: tuple[Rule, ...] = ()
    base64_min_chars: int = 400
    _plugins: list[tuple[Any, str, _Gate | None]] = field(default_factory=list, repr=False)
    _user_rx: re.Pattern[str] | None = field(default=None, repr=False)
    _base64_rx: re.Pattern[str] | None = field(default=None, repr=False)
    _anchors: list[_Check] = field(default_factory=list, repr=False)
    _scan: _SessionScan | None = field(default=None, repr=False)
    _lines: dict[str, _LineResult] = field(default_factory=dict, repr=False)
    _derived: dict[tuple[str, ...], Redactor] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._plugins = [
            (plugin, _DS_KINDS.get(plugin.secret_type, _slug(plugin.secret_type)), _gate(plugin))
            for plugin in _load_plugins()
        ]
        names = sorted({u for u in self.usernames if u}, key=len, reverse=True)
        if names:
            alternatives = "|".join(re.escape(u) for u in names)
            self._user_rx = re.compile(rf"(?<![A-Za-z0-9_])(?:{alternatives})(?![A-Za-z0-9_])")
        self._base64_rx = re.compile(_BASE64_RUN.format(n=self.base64_min_chars))
        by_anchor: dict[str, list[int]] = {}
        for index, rule in enumerate(self.rules):
            for anchor in rule.anchors:
                by_anchor.setdefault(anchor, []).append(index)
        self._anchors = [
            (anchor, re.compile(anchor[3:]) if anchor.startswith("re:") else None, tuple(rules))
            for anchor, rules in by_anchor.items()
        ]

    @property
    def rules(self) -> tuple[Rule, ...]:
        return (*RULES, *self.extra_rules)

    def for_texts(self, texts: Sequence[str]) -> Redactor:
        """This redactor, also replacing the home-folder users named in ``texts``.

        A session that shows ``/home/jdoe/…`` has ``jdoe`` replaced everywhere in it
        (prompts, ``whoami``, prose), as configured names are.
        """
        return self.with_users(home_users(texts))

    def with_users(self, names: Sequence[str]) -> Redactor:
        """This redactor, also replacing ``names`` (cached; shares the line cache)."""
        added = tuple(n for n in names if n not in self.usernames)
        if not added:
            return self
        derived = self._derived.get(added)
        if derived is None:
            if len(self._derived) >= DERIVED_CACHE_SIZE:
                self._derived.clear()
            derived = Redactor(
                emails=self.emails,
                home_paths=self.home_paths,
                usernames=(*self.usernames, *added),
                email_allowlist=self.email_allowlist,
                extra_rules=self.extra_rules,
                base64_min_chars=self.base64_min_chars,
            )
            derived._plugins, derived._lines, derived._scan = self._plugins, self._lines, self._scan
            self._derived[added] = derived
        return derived

    # ---------------------------------------------------------------- public

    def session_hints(
        self, texts: Sequence[str]
    ) -> tuple[list[_Hints | None], tuple[str, ...]] | None:
        """Per text, what the stages can find in it (None: nothing), from one pass.

        ``texts`` are a session's texts; see :class:`_SessionScan`. None when the
        pre-scan cannot vouch for positions (then redact text by text).
        """
        if self._scan is None:
            self._scan = _SessionScan(self._anchors, self.base64_min_chars)
        users = self.usernames if self._user_rx is not None else ()
        return self._scan.hints(texts, emails=self.emails, usernames=users)

    def anchors_in(self, text: str) -> list[_Check]:
        """The rule anchors present in ``text`` (a whole session's texts joined).

        Checking each text against only these saves most of the per-text checks.
        """
        return [check for check in self._anchors if _present(check, text)]

    def redact(
        self,
        text: str,
        found: dict[str, str] | None = None,
        *,
        anchors: list[_Check] | None = None,
    ) -> tuple[str, Counter[str]]:
        """``text`` with every finding replaced, and the count per kind.

        ``found`` (optional) collects secret values → kind, so a caller can replace
        the same values wherever else they occur (``redact_session`` does).
        ``anchors`` narrows the anchored rules tried (see :meth:`anchors_in`).
        """
        counts: Counter[str] = Counter()
        if not text:
            return text, counts
        candidates = self._anchors if anchors is None else anchors
        hits = sorted({i for check in candidates if _present(check, text) for i in check[2]})
        if hits:
            rules = self.rules
            for index in hits:
                text = _apply_rule(rules[index], text, counts, found)
        text = self._base64_blobs(text, counts)
        text = self._detect_secrets(text, counts, found)
        owners = any(marker in text for marker in _OWNER_MARKERS)
        text = self._last_stages(
            text, counts, homes=True, numbers=_may_hold_number(text), owners=owners
        )
        return text, counts

    def redact_hinted(
        self, text: str, found: dict[str, str] | None, hints: _Hints
    ) -> tuple[str, Counter[str]]:
        """:meth:`redact` for a text whose :class:`_Hints` the session pre-scan gave.

        Same result, skipping the stages the hints rule out: only the anchored rules
        whose anchor is in the text run, the base64 stage only where a run may be,
        and while nothing was replaced (nothing counted) the text is the one the
        pre-scan saw, so its assignment positions stand for the candidate-line search.
        """
        counts: Counter[str] = Counter()
        if not text:
            return text, counts
        if hints.checks:
            rules = self.rules
            for index in sorted({i for check in hints.checks for i in check[2]}):
                text = _apply_rule(rules[index], text, counts, found)
        if hints.base64:
            text = self._base64_blobs(text, counts)
        if counts:  # changed: search its candidate lines afresh
            text = self._detect_secrets(text, counts, found)
        elif hints.assignments:
            text = self._detect_secrets(text, counts, found, hints.assignments, hints.low)
        text = self._last_stages(
            text, counts, homes=hints.homes, numbers=hints.numbers, owners=hints.owners
        )
        return text, counts

    # ---------------------------------------------------------------- stages

    def _last_stages(
        self, text: str, counts: Counter[str], *, homes: bool, numbers: bool, owners: bool
    ) -> str:
        """Card and phone numbers, emails, home paths, file owners, user names; each
        flag says its stage's marker may be present."""
        if numbers:
            text = _numbers(text, counts)
        if self.emails and "@" in text:
            text = self._emails(text, counts)
        if self.home_paths and homes:
            text = _homes(text, counts)
        if owners:
            text = _owners(text, counts, self.usernames)
        if self._user_rx is not None and any(name in text for name in self.usernames):
            text = _sub_count(self._user_rx, USER, "username", text, counts)
        return text

    def _base64_blobs(self, text: str, counts: Counter[str]) -> str:
        if len(text) < self.base64_min_chars or self._base64_rx is None:
            return text
        lines = text.split("\n")
        if max(map(len, lines)) < self.base64_min_chars:
            return text  # a base64 run is within one line: none is long enough
        for index, line in enumerate(lines):
            if len(line) >= self.base64_min_chars:
                lines[index] = _sub_count(self._base64_rx, BASE64, "base64", line, counts)
        return "\n".join(lines)

    def _detect_secrets(
        self,
        text: str,
        counts: Counter[str],
        found: dict[str, str] | None,
        assignments: Sequence[int] | None = None,
        low: str | None = None,
    ) -> str:
        """Keyed assignments and detect-secrets' plugins, on candidate lines only.

        ``assignments``: where the session pre-scan found ``keyword … =`` in
        ``text.lower()``; only their lines can pass the assignment test below.
        ``low``: ``text.lower()`` when the caller has it.
        """
        low = text.lower() if low is None else low
        if assignments is not None and len(low) == len(text):
            spans = _spans(low, _lines_at(low, assignments))
        else:
            spans = _candidate_lines(low)
        if not spans:
            return text
        pieces: list[str] = []
        last = 0
        for start, end in spans:
            line = text[start:end]
            if not _ASSIGNMENT.search(low, start, end):
                continue
            new = self._scan_line(line, counts, found)
            if new != line:
                pieces.append(text[last:start])
                pieces.append(new)
                last = end
        if not pieces:
            return text
        pieces.append(text[last:])
        return "".join(pieces)

    def _scan_line(self, line: str, counts: Counter[str], found: dict[str, str] | None) -> str:
        """One candidate line through the keyed rule and the plugins (cached by content).

        The result depends on the line alone, so a line seen before (code read
        twice, the same config line in many files) replays its counts and found
        values instead of running ~25 plugins again.
        """
        result = self._lines.get(line)
        if result is None:
            result = self._scan_line_once(line)
            if len(self._lines) >= LINE_CACHE_SIZE:
                self._lines.clear()
            self._lines[line] = result
        new, kinds, values = result
        for kind, n in kinds:
            counts[kind] += n
        if found is not None:
            for value, kind in values:
                found.setdefault(value, kind)
        return new

    def _scan_line_once(self, line: str) -> _LineResult:
        counts: Counter[str] = Counter()
        found: dict[str, str] = {}
        line = _apply_keyed(line, counts, found)
        values: dict[str, str] = {}
        for plugin, kind, gate in self._plugins:
            if gate is not None and not gate(line):
                continue  # the plugin's patterns need what the line lacks
            for value in plugin.analyze_string(line):
                if _keep_finding(value, line, kind):
                    values.setdefault(_whole_token(value, line, kind), kind)
        for value in sorted(values, key=len, reverse=True):
            if value in line:
                kind = values[value]
                counts[kind] += line.count(value)
                line = line.replace(value, secret_placeholder(kind))
                found.setdefault(value, kind)
        return line, tuple(counts.items()), tuple(found.items())

    def _emails(self, text: str, counts: Counter[str]) -> str:
        pieces: list[str] = []
        last = 0
        for match in _EMAIL_AT.finditer(text):
            local = _EMAIL_LOCAL.search(text, max(last, match.start() - 64), match.start())
            if local is None or local.end() != match.start():
                continue
            address = text[local.start() : match.end()]
            if text.endswith("://", 0, local.start()):
                continue  # https://user@host: a login in a URL, not a mailbox
            if any(fnmatch.fnmatchcase(address.lower(), p) for p in self.email_allowlist):
                continue
            pieces.append(text[last : local.start()])
            pieces.append(EMAIL)
            counts["email"] += 1
            last = match.end()
        if not pieces:
            return text
        pieces.append(text[last:])
        return "".join(pieces)


def _candidate_lines(low: str) -> list[tuple[int, int]]:
    """(start, end) of each line holding a secret keyword, in order, via fast ``find``."""
    starts: set[int] = set()
    for word in _KEYWORDS:
        position = low.find(word)
        while position != -1:
            line_start = low.rfind("\n", 0, position) + 1
            starts.add(line_start)
            line_end = low.find("\n", position)
            if line_end == -1:
                break
            position = low.find(word, line_end)
    return _spans(low, starts)


def _lines_at(low: str, positions: Iterable[int]) -> set[int]:
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


def _spans(low: str, starts: Iterable[int]) -> list[tuple[int, int]]:
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


SHORT_ANCHOR = 2  # anchors this short are searched exactly, not in the lower-cased pass
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
        if any(word in low[position:cut] for word in _KEYWORDS):
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
    if not secret_under(match.group(1), value) or not _plausible_secret_value(value):
        return None
    if _is_code(value) or _PLACEHOLDER.search(value) or value.endswith(","):
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


def _apply_keyed(line: str, counts: Counter[str], found: dict[str, str] | None) -> str:
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


_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def _whole_token(value: str, line: str, kind: str) -> str:
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


def _keep_finding(value: str, line: str, kind: str) -> bool:
    """detect-secrets' own heuristics (sequential, uuid, templated, $-prefixed) + ours."""
    if len(value) < 4 or "<" in value or ">" in value or _PLACEHOLDER.search(value):
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
    if len(value) < 16 or not _looks_generated(value) or _HEX.fullmatch(value):
        return False
    return not (_DIGEST.match(value) or _name_like(value) or _UUID.fullmatch(value))


@functools.lru_cache(maxsize=1)
def _heuristics() -> tuple[Callable[[str, str], bool], ...]:
    from detect_secrets.filters import heuristic as h

    return (
        lambda secret, _line: bool(h.is_sequential_string(secret)),
        lambda secret, _line: bool(h.is_potential_uuid(secret)),
        lambda secret, _line: bool(h.is_templated_secret(secret)),
        lambda secret, _line: bool(h.is_prefixed_with_dollar_sign(secret)),
        lambda _secret, line: bool(h.is_indirect_reference(line)),
        lambda secret, _line: not _plausible_secret_value(secret),
    )


@functools.lru_cache(maxsize=1)
def _load_plugins() -> list[Any]:
    """detect-secrets' default plugins (without public-IP detection), instantiated once."""
    from detect_secrets.settings import default_settings, get_plugins

    with default_settings():
        return [p for p in get_plugins() if type(p).__name__ not in _DETECT_SECRETS_SKIP]


def _apply_rule(rule: Rule, text: str, counts: Counter[str], found: dict[str, str] | None) -> str:
    replacement = rule.replacement()

    def substitute(match: re.Match[str]) -> str:
        group = rule.group
        if group < 0:
            group = next((i for i, g in enumerate(match.groups(), 1) if g is not None), 0)
        value = match.group(group)
        if not value or _PLACEHOLDER.fullmatch(value):
            return match.group(0)
        if rule.accept is not None and not (rule.accept(value) and _plausible_secret_value(value)):
            return match.group(0)
        counts[rule.kind] += 1
        if found is not None and rule.placeholder == "" and len(value) >= 8:
            found.setdefault(value.strip("'\""), rule.kind)
        start, end = match.span(group)
        offset = match.start()
        whole = match.group(0)
        return whole[: start - offset] + replacement + whole[end - offset :]

    return rule.pattern.sub(substitute, text)


def _sub_count(
    pattern: re.Pattern[str], placeholder: str, kind: str, text: str, counts: Counter[str]
) -> str:
    new, n = pattern.subn(placeholder, text)
    if n:
        counts[kind] += n
    return new


def _homes(text: str, counts: Counter[str]) -> str:
    if "/home/" in text or "/Users/" in text:
        text = _sub_count(_HOME_POSIX, HOME, "home_path", text, counts)
    if "Users" in text or "Documents and Settings" in text:
        text = _sub_count(_HOME_WINDOWS, HOME, "home_path", text, counts)
    if "-home-" in text or "-Users-" in text:
        text = _sub_count(_HOME_DASHED, HOME, "home_path", text, counts)
    return text


def replace_known(text: str, found: dict[str, str], counts: Counter[str]) -> str:
    """Replace every literal occurrence of secret values found elsewhere."""
    return _replace_values(text, sorted(found, key=len, reverse=True), found, counts)


def _replace_values(
    text: str, values: list[str], found: dict[str, str], counts: Counter[str]
) -> str:
    """:func:`replace_known` with ``found``'s values already sorted longest first."""
    for value in values:
        if value in text:
            counts[found[value]] += text.count(value)
            text = text.replace(value, secret_placeholder(found[value]))
    return text


# --------------------------------------------------------------------------- numbers, owners

# Digits become "0" in an ASCII view of the text (same offsets); a card or phone
# number holds one of these shapes, found with fast literal searches, and the
# number regex runs only in a window around each.
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_NUMBER_NEEDLES = (
    *(b"0" * 13, b"0000 0000 0000", b"0000-0000-0000", b"0000 000000 0000"),
    *(b"0000-000000-0000", b"000-000-0000", b"000.000.0000", b"000) 000", b"000)000"),
    *(b"+0 0", b"+00 0", b"+000 0", b"+0-0", b"+00-0", b"+000-0", b"+00000000"),
    *(b"+0 (", b"+00 (", b"+000 ("),
)
_WINDOW_BEFORE, _WINDOW_AFTER = 8, 48  # around a needle: longer than any number
# One regex, first character first (a leading lookbehind would make re try every
# position): a card (13-19 digits, plain or in groups of 4, or Amex 4-6-5), or a
# phone number (North American with separators or +1; international with +).
_NUMBER = re.compile(
    r"(?:(?P<card>[0-9](?<![\w.+\-/][0-9])(?:[0-9]{12,18}"
    r"|[0-9]{3}([ \-])[0-9]{4}\2[0-9]{4}\2[0-9]{1,7}|[0-9]{3}([ \-])[0-9]{6}\3[0-9]{4,5}))"
    r"|(?P<phone>[+(2-9](?<![\w+.\-/][+(2-9])(?:"
    r"(?<=\+)1[ .\-]?(?:\([2-9][0-9]{2}\)|[2-9][0-9]{2})[ .\-]?[2-9][0-9]{2}[ .\-]?[0-9]{4}"
    r"|(?<=\()[2-9][0-9]{2}\) ?[2-9][0-9]{2}[.\-][0-9]{4}"
    r"|(?<=[2-9])[0-9]{2}([.\-])[2-9][0-9]{2}\5[0-9]{4}"
    r"|(?<=\+)[2-9][0-9]{0,2}[ \-]\(?[0-9]{1,5}\)?[0-9]{0,4}(?:[ \-][0-9]{2,5}){1,4}"
    r"|(?<=\+)[2-9][0-9]{7,13})))"
    r"(?![\w.\-]|[ \-][0-9])"
)


def _may_hold_number(text: str) -> bool:
    return bool(_number_finder()(_folded(text)))


@functools.lru_cache(maxsize=1)
def _number_finder() -> Callable[[bytes], _Hits]:
    return _multi_finder([n.decode() for n in _NUMBER_NEEDLES], overlapping=False)


def _number_windows(text: str) -> list[tuple[int, int]]:
    """Merged (start, end) windows around every number-shaped needle in ``text``."""
    spans = [
        (max(0, start - _WINDOW_BEFORE), start + _WINDOW_AFTER)
        for _, start, _ in _number_finder()(_folded(text))
    ]
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _numbers(text: str, counts: Counter[str]) -> str:
    """Payment card numbers (a known network's prefix and length, Luhn-valid) and
    phone numbers, replaced; searched only in windows around their shapes."""
    pieces: list[str] = []
    last = 0
    for start, end in _number_windows(text):
        for match in _NUMBER.finditer(text, max(start, last), min(end, len(text))):
            if match.end() >= end and end < len(text):
                continue  # reaches the window's edge: longer than any number
            kind = _number_kind(match)
            if kind:
                pieces.append(text[last : match.start()])
                pieces.append(secret_placeholder(kind))
                counts[kind] += 1
                last = match.end()
    if not pieces:
        return text
    pieces.append(text[last:])
    return "".join(pieces)


def _number_kind(match: re.Match[str]) -> str:
    digits = re.sub("[^0-9]", "", match.group(0))
    if match.group("card") is not None:
        return "card_number" if _card_network(digits) and _luhn(digits) else ""
    return "phone_number" if 10 <= len(digits) <= 15 else ""


def _card_network(d: str) -> bool:
    """Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay: prefix and length."""
    n = len(d)
    if d[0] == "4":
        return n in (13, 16, 19)
    if d[:2] in ("34", "37"):
        return n == 15
    if "51" <= d[:2] <= "55" or "2221" <= d[:4] <= "2720":
        return n == 16
    if d.startswith(("6011", "65", "62")) or "644" <= d[:3] <= "649" or "3528" <= d[:4] <= "3589":
        return 16 <= n <= 19
    return (d[:2] in ("36", "38", "39") or "300" <= d[:3] <= "305") and 14 <= n <= 19


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


# Lower-cased markers gating the owner stage: an ls -l permission triple, chown, chgrp.
_OWNER_MARKERS = ("rw-", "r-x", "r--", "rwx", "chown", "chgrp")
_LS_OWNER = re.compile(
    r"(?m)^([ \t]*[-dlcbpsD][-rwxsStTl]{9}[.@+]?[ \t]+[0-9]+[ \t]+)"
    r"([^\s:<>]+)([ \t]+)([^\s:<>]+)(?=[ \t]+[0-9])"
)
_CHOWN = re.compile(
    r"\b(chown|chgrp)((?:[ \t]+-[-A-Za-z]+)*[ \t]+)"
    r"([A-Za-z_][A-Za-z0-9_\-]*)(?::([A-Za-z_][A-Za-z0-9_\-]*))?(?=[ \t]+[^\s])"
)
# Accounts and groups that name a role, not a person.
_SYSTEM_ACCOUNTS = frozenset(
    {
        *("root", "daemon", "bin", "sys", "adm", "nobody", "nogroup", "nfsnobody", "wheel"),
        *("staff", "admin", "everyone", "users", "www-data", "www", "apache", "nginx", "http"),
        *("docker", "sudo", "syslog", "messagebus", "postgres", "mysql", "redis", "mail"),
        *("games", "man", "lp", "news", "uucp", "proxy", "backup", "list", "irc", "sshd"),
        *("ntp", "tty", "disk", "audio", "video", "plugdev", "netdev", "input", "kvm", "utmp"),
        *("operator", "render", "systemd-network", "systemd-resolve", "polkitd", "git"),
    }
)
# Words that follow "chown" in prose ("chown the files to …"): never a user name.
_PROSE_AFTER_CHOWN = frozenset(
    {"the", "to", "it", "this", "that", "them", "and", "or", "on", "in", "with", "for", "is"}
    | {"was", "will", "can", "you", "your", "files", "file", "command", "recursively", "a"}
)


def _personal(name: str) -> bool:
    return name not in _SYSTEM_ACCOUNTS and not name.startswith("_") and not name.isdigit()


def _owners(text: str, counts: Counter[str], usernames: Sequence[str]) -> str:
    """User names as ``ls -l``'s owner column and ``chown``/``chgrp`` arguments.

    A group is a person's when it is the owner's name or a known user (Linux gives
    each user a group of their name); ``staff``, ``wheel`` and the like stay.
    """
    known = set(usernames)

    def ls_line(match: re.Match[str]) -> str:
        prefix, owner, gap, group = match.groups()
        new_owner = _as_user(owner, counts, personal=_personal(owner))
        personal_group = (group == owner and new_owner != owner) or group in known
        return prefix + new_owner + gap + _as_user(group, counts, personal=personal_group)

    def chown(match: re.Match[str]) -> str:
        command, flags, first, group = match.groups()
        if first.lower() in _PROSE_AFTER_CHOWN:
            return match.group(0)
        if command == "chgrp":
            return command + flags + _as_user(first, counts, personal=_personal(first))
        out = command + flags + _as_user(first, counts, personal=_personal(first))
        if group is not None:
            personal_group = (group == first and _personal(first)) or group in known
            out += ":" + _as_user(group, counts, personal=personal_group)
        return out

    if "chown" in text or "chgrp" in text:
        text = _CHOWN.sub(chown, text)
    return _LS_OWNER.sub(ls_line, text)


def _as_user(name: str, counts: Counter[str], *, personal: bool) -> str:
    if not personal or _PLACEHOLDER.fullmatch(name):
        return name
    counts["username"] += 1
    return USER


# --------------------------------------------------------------------------- plugin gates

# A cached line result: (new line, counts per kind, found values → kind), in order.
_LineResult = tuple[str, tuple[tuple[str, int], ...], tuple[tuple[str, str], ...]]
_Gate = Callable[[str], bool]
LINE_CACHE_SIZE = 16384  # candidate lines remembered (cleared whole when full)
DERIVED_CACHE_SIZE = 64  # redactors with a session's home users added


def _gate(plugin: Any) -> _Gate | None:
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


# --------------------------------------------------------------------------- session pre-scan

# Lower-cased markers gating the home-path stage (a superset of what ``_homes`` checks).
_HOME_MARKERS = ("/home/", "users", "documents and settings", "-home-")


class _Hints(NamedTuple):
    """What the session pre-scan found in one text (a text without any has None)."""

    checks: tuple[_Check, ...]  # anchored rules whose anchor is in the text
    assignments: tuple[int, ...]  # where "keyword … =" starts, in text.lower()
    base64: bool  # may hold a run of base64_min_chars base64 characters
    homes: bool  # holds a home-path marker
    low: str | None = None  # text.lower(), when the pre-scan has it
    numbers: bool = False  # holds a digit run shaped like a card or phone number
    owners: bool = False  # holds an ls -l permission string or chown/chgrp


_Hits = list[tuple[int, int, int]]  # (pattern index, start, end)


def _multi_finder(patterns: Sequence[str], *, overlapping: bool = True) -> Callable[[bytes], _Hits]:
    """Every occurrence of every pattern (ASCII) in a byte string, in order of their
    ends (``overlapping``: also those inside or across another): one Aho-Corasick
    pass with ``ahocorasick_rs``, else one ``find`` pass per pattern (all hits)."""
    encoded = [p.encode("ascii") for p in patterns]
    try:
        import ahocorasick_rs
    except ImportError:
        return functools.partial(_find_each, encoded)
    automaton = ahocorasick_rs.BytesAhoCorasick(encoded)
    return functools.partial(automaton.find_matches_as_indexes, overlapping=overlapping)


def _fold(text: str) -> str:
    """An ASCII text as the session pre-scan searches it: lower case, digits "0"."""
    return text.encode("ascii").translate(_FOLD_BYTES).decode("ascii")


def _folded(text: str) -> bytes:
    """Any text folded (non-ASCII characters "?", one byte each: offsets stay)."""
    return text.encode("ascii", "replace").translate(_FOLD_BYTES)


def _find_each(patterns: list[bytes], text: bytes) -> _Hits:
    hits = []
    for index, pattern in enumerate(patterns):
        position = text.find(pattern)
        while position != -1:
            hits.append((index, position, position + len(pattern)))
            position = text.find(pattern, position + 1)
    return sorted(hits, key=lambda hit: hit[2])


class _SessionScan:
    """One multi-literal pass over a whole session to tell each text's work.

    The session's texts are joined with newlines and folded to ASCII bytes (a
    non-ASCII character becomes "?", so offsets stay character offsets; letters
    lower-cased, digits "0"); one Aho-Corasick search finds every secret keyword,
    every folded rule anchor, every home and owner marker and every number shape,
    and each hit is mapped back to its text. A keyword counts only where an
    assignment starts (``_ASSIGNMENT`` within the line, the test candidate lines
    must pass; in a non-ASCII text every keyword counts); a folded anchor hit is
    confirmed with the exact anchor in that text, and anchors of one or two
    characters are searched as they are. Base64 runs are found by sampling: a run
    of ``n`` base64 characters covers a whole piece of ``n // 2`` starting at a
    multiple of ``n // 2``, so only those pieces are tested. All of these are
    necessary conditions: a text without them cannot change in the stage they gate,
    and a text with them runs that stage.
    """

    def __init__(self, anchors: Sequence[_Check], base64_min_chars: int) -> None:
        markers = (*_KEYWORDS, *_HOME_MARKERS, *_OWNER_MARKERS)
        by_pattern: dict[str, list[_Check]] = {p: [] for p in markers}
        self.always: list[_Check] = []  # "re:", empty or non-ASCII anchors: every text
        self.exact: list[_Check] = []  # short anchors: found case-sensitively
        for check in anchors:
            anchor, gate, _ = check
            if gate is not None or not anchor or not anchor.isascii() or "?" in anchor:
                self.always.append(check)
            elif len(anchor) <= SHORT_ANCHOR:
                self.exact.append(check)
            else:
                by_pattern.setdefault(_fold(anchor), []).append(check)
        patterns = list(by_pattern)
        self.keyword = [p in _KEYWORDS for p in patterns]
        self.home = [p in _HOME_MARKERS for p in patterns]
        self.owner = [p in _OWNER_MARKERS for p in patterns]
        self.checks = [tuple(by_pattern[p]) for p in patterns]
        self.find = _multi_finder(patterns)
        self.find_exact = _multi_finder([c[0] for c in self.exact]) if self.exact else None
        self.half = max(1, base64_min_chars // 2)
        self.piece = re.compile(f"[A-Za-z0-9+/]{{{self.half}}}")

    def hints(
        self, texts: Sequence[str], *, emails: bool, usernames: Sequence[str]
    ) -> tuple[list[_Hints | None], tuple[str, ...]] | None:
        """Per text its hints (None: nothing to do), and the home-folder users the
        texts name (:func:`home_users`); None when offsets cannot be trusted."""
        joined = "\n".join(texts)
        if not joined.isascii() and any(c in joined for c in _LOWER_TO_ASCII):
            return None  # lower-casing makes ASCII of these: scan text by text
        data = joined.encode("ascii", "replace")
        folded = data.translate(_FOLD_BYTES)
        # text i starts at offsets[i]: the lengths before it, plus one newline each
        offsets = list(map(add, accumulate(map(len, texts), initial=0), count()))
        plain = None if joined.isascii() else [t.isascii() for t in texts]
        assignments, lowered, homes, owners = self._literals(folded, offsets, plain)
        numbers = _texts_at(_number_finder()(folded), offsets)
        if self.find_exact is not None:
            for pattern, start, _ in self.find_exact(data):
                index = bisect_right(offsets, start) - 1
                lowered.setdefault(index, set()).add(-1 - pattern)
        samples = range(0, len(joined), self.half)
        pieces = filter(None, map(self.piece.match, repeat(joined), samples))
        base64 = {bisect_right(offsets, m.start()) - 1 for m in pieces}
        learned = home_users([texts[i] for i in sorted(homes)])
        names = [*(["@"] if emails else []), *usernames, *learned]
        other = _texts_holding(joined, offsets, names)
        out: list[_Hints | None] = [None] * len(texts)
        if self.always:
            busy = set(range(len(texts)))
        else:
            for index in other:
                out[index] = _LAST_STAGES_ONLY
            busy = set(assignments) | set(lowered) | base64 | homes | owners | numbers
        for index in busy:
            text = texts[index]
            present = [c for p in lowered.get(index, ()) for c in self._checks(p) if c[0] in text]
            if self.always:
                present.extend(c for c in self.always if _present(c, text))
            at = assignments.get(index, ())
            low = None
            if at and (plain is None or plain[index]):
                low = folded[offsets[index] : offsets[index + 1] - 1].decode("ascii")
            hints = _Hints(
                tuple(present),
                tuple(at),
                base64=index in base64,
                homes=index in homes,
                low=low,
                numbers=index in numbers,
                owners=index in owners,
            )
            if any(hints) or index in other:
                out[index] = hints
        return out, learned

    def _checks(self, pattern: int) -> Sequence[_Check]:
        """The checks of an automaton pattern, or (negative) of an exact anchor."""
        return self.checks[pattern] if pattern >= 0 else (self.exact[-1 - pattern],)

    def _literals(
        self, folded: bytes, offsets: list[int], plain: list[bool] | None
    ) -> tuple[dict[int, list[int]], dict[int, set[int]], set[int], set[int]]:
        """Per text: where assignments start, folded anchors present, home markers,
        owner markers (``ls -l``, ``chown``)."""
        hits = self.find(folded)
        keyword, home, checks, match = self.keyword, self.home, self.checks, _ASSIGNMENT_AT.match
        assignments: dict[int, list[int]] = {}
        if plain is None:  # all ASCII: the folded bytes tell where assignments are
            starts = [s for p, s, _ in hits if keyword[p] and match(folded, s) is not None]
        else:  # in a non-ASCII text every keyword counts (its text tells)
            starts = [s for p, s, _ in hits if keyword[p]]
        for start in starts:
            index = bisect_right(offsets, start) - 1
            if plain is not None and plain[index] and match(folded, start) is None:
                continue
            assignments.setdefault(index, []).append(start - offsets[index])
        lowered: dict[int, set[int]] = {}
        homes: set[int] = set()
        owners: set[int] = set()
        owner = self.owner
        for pattern, start in [(p, s) for p, s, _ in hits if home[p] or checks[p] or owner[p]]:
            index = bisect_right(offsets, start) - 1
            if home[pattern]:
                homes.add(index)
            if owner[pattern]:
                owners.add(index)
            if checks[pattern]:
                lowered.setdefault(index, set()).add(pattern)
        return assignments, lowered, homes, owners


def _texts_at(hits: _Hits, offsets: list[int]) -> set[int]:
    """Indexes of the texts (starting at ``offsets``) holding a hit (hits in order)."""
    out: set[int] = set()
    next_start = -1
    for _, start, _ in hits:
        if start < next_start:
            continue  # this text is already in
        index = bisect_right(offsets, start) - 1
        out.add(index)
        next_start = offsets[index + 1]
    return out


# Non-ASCII characters whose lower case is (or starts with) an ASCII letter.
_LOWER_TO_ASCII = ("\u212a", "\u0130")
_FOLD_BYTES = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ123456789", b"abcdefghijklmnopqrstuvwxyz000000000"
)


_LAST_STAGES_ONLY = _Hints((), (), base64=False, homes=False)  # "@" or a user name


def _texts_holding(joined: str, offsets: list[int], needles: Sequence[str]) -> set[int]:
    """Indexes of the texts (joined with newlines, starting at ``offsets``) holding a needle."""
    out: set[int] = set()
    for needle in needles:
        if not needle or "\n" in needle:  # in every text, or may span two: ask each text
            out.update(i for i in range(len(offsets) - 1) if needle in _text_at(joined, offsets, i))
            continue
        position = joined.find(needle)
        while position != -1:
            index = bisect_right(offsets, position) - 1
            out.add(index)
            position = joined.find(needle, offsets[index + 1])
    return out


def _text_at(joined: str, offsets: list[int], index: int) -> str:
    return joined[offsets[index] : offsets[index + 1] - 1]


# --------------------------------------------------------------------------- config → redactor


def redactor_for(cfg: CurateConfig) -> Redactor:
    """The (cached) redactor for a curate config."""
    users = tuple(getattr(cfg, "usernames", ()))
    if getattr(cfg, "redact_current_user", True):
        users = (*users, *_current_user())
    return _cached_redactor(
        bool(cfg.redact_emails),
        bool(cfg.redact_home_paths),
        users,
        tuple(getattr(cfg, "email_allowlist", ())),
        tuple(sorted(dict(getattr(cfg, "secret_patterns", {})).items())),
        int(getattr(cfg, "base64_min_chars", 400)),
    )


@functools.lru_cache(maxsize=16)
def _cached_redactor(
    emails: bool,
    home_paths: bool,
    usernames: tuple[str, ...],
    email_allowlist: tuple[str, ...],
    secret_patterns: tuple[tuple[str, str], ...],
    base64_min_chars: int,
) -> Redactor:
    return Redactor(
        emails=emails,
        home_paths=home_paths,
        usernames=usernames,
        email_allowlist=email_allowlist,
        extra_rules=tuple(compile_secret_patterns(dict(secret_patterns))),
        base64_min_chars=base64_min_chars,
    )


def compile_secret_patterns(patterns: dict[str, str]) -> list[Rule]:
    """User rules ``kind: regex`` (config ``curate.secret_patterns``), run on every text."""
    rules = []
    for kind, pattern in patterns.items():
        try:
            compiled = re.compile(pattern)
        except re.error as e:
            raise ConfigError(
                f"curate.secret_patterns.{kind}: invalid regex {pattern!r}: {e}",
                hint="fix the pattern in the config (Python `re` syntax)",
            ) from e
        rules.append(Rule(_slug(kind) or "custom", ("",), compiled))
    return rules


@functools.lru_cache(maxsize=1)
def _current_user() -> tuple[str, ...]:
    try:
        name = getpass.getuser()
    except (OSError, KeyError):
        return ()
    if not _identifying(name):
        return ()
    return (name,)


# --------------------------------------------------------------------------- public API


def redact_text(text: str, cfg: CurateConfig) -> tuple[str, Counter[str]]:
    """``text`` redacted under ``cfg``, with the number of replacements per kind."""
    return redactor_for(cfg).for_texts([text]).redact(text)


def redact_session(session: Session, cfg: CurateConfig) -> Counter[str]:
    """Redact a session in place; return the replacements per kind.

    Covers message texts, reasoning, tool-call arguments (nested JSON values; a value
    under a secret-looking key such as ``password`` is replaced whole), signal details,
    message and session metadata, and the session's project/title. Secret values found
    anywhere in the session are then replaced wherever else they occur in it (an
    ``env`` dump followed by the bare value in a command line, a file read twice …).
    """
    texts = _session_texts(session)
    redaction = _SessionRedaction(redactor_for(cfg), texts)
    _walk_session(session, redaction.fix, redaction.hide)
    found, counts = redaction.found, redaction.counts
    values = sorted(found, key=len, reverse=True)
    stored = "\0".join(redaction.outputs)
    if any(value in stored for value in values):  # else the second walk changes nothing

        def known(text: str) -> str:
            return _replace_values(text, values, found, counts)

        _walk_session(session, known, known)
    return counts


class _SessionRedaction:
    """The ``fix`` / ``hide`` callbacks of one walk over a session.

    The walk calls ``fix`` on the texts in the order :func:`_session_texts` listed
    them, so the i-th call takes the i-th text's pre-scan hints (checked by
    identity; a text that is not the expected one is redacted in full). Texts of
    256+ characters are redacted once per session (Claude Code repeats file
    contents); secret values found anywhere are collected in ``found``.
    """

    def __init__(self, redactor: Redactor, texts: list[str]) -> None:
        plan = redactor.session_hints(texts)
        self.hints = None if plan is None else plan[0]
        self.redactor = redactor.for_texts(texts) if plan is None else redactor.with_users(plan[1])
        self.texts = texts
        # without hints, the anchors present in the session narrow each text's checks
        self.anchors = redactor.anchors_in("\0".join(texts)) if self.hints is None else None
        self.calls = 0
        self.counts: Counter[str] = Counter()
        self.found: dict[str, str] = {}
        self.memo: dict[str, tuple[str, Counter[str]]] = {}
        self.outputs: list[str] = []  # every string the walk stores

    def fix(self, text: str) -> str:
        index = self.calls
        self.calls = index + 1
        hints: _Hints | bool | None = False  # False: no pre-scan hints for this text
        if self.hints is not None and index < len(self.texts) and self.texts[index] is text:
            hints = self.hints[index]
        if hints is None:
            new = text  # the pre-scan found nothing any stage could change
        elif len(text) < 256:
            new = self._counted(self._redact(text, hints))
        else:
            done = self.memo.get(text)
            if done is None:
                done = self.memo[text] = self._redact(text, hints)
            new = self._counted(done)
        self.outputs.append(new)
        return new

    def _counted(self, result: tuple[str, Counter[str]]) -> str:
        if result[1]:
            self.counts.update(result[1])
        return result[0]

    def hide(self, value: str) -> str:
        new = self.fix(value)
        if new != value:  # a rule already typed it (e.g. a GitHub token under "token")
            return new
        self.counts["keyed_secret"] += 1
        if len(value) >= 8:
            self.found.setdefault(value, "keyed_secret")
        placeholder = secret_placeholder("keyed_secret")
        self.outputs[-1] = placeholder  # stored instead of what fix returned
        return placeholder

    def _redact(self, text: str, hints: _Hints | bool) -> tuple[str, Counter[str]]:
        if isinstance(hints, _Hints):
            return self.redactor.redact_hinted(text, self.found, hints)
        return self.redactor.redact(text, self.found, anchors=self.anchors)


def _session_texts(session: Session) -> list[str]:
    """Every string :func:`_walk_session` passes to ``fix`` or ``hide``, in its order."""
    texts: list[str] = []
    for attribute in ("project", "title"):
        value = getattr(session, attribute)
        if isinstance(value, str):
            texts.append(value)
    _strings(session.metadata, texts)
    for message in session.messages:
        texts.append(message.text)
        if message.reasoning:
            texts.append(message.reasoning)
        for call in message.tool_calls:
            _strings(call.arguments, texts)
        texts.extend(signal.detail for signal in message.signals)
        _strings(message.metadata, texts)
    return texts


def _strings(value: Any, out: list[str]) -> None:
    """The strings in a JSON value, in the order :func:`redact_value` visits them."""
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for item in value.values():
            _strings(item, out)
    elif isinstance(value, list):
        for item in value:
            _strings(item, out)


def _walk_session(session: Session, fix: Callable[[str], str], hide: Callable[[str], str]) -> None:
    # visits strings in the order _session_texts lists them (keep the two in step)
    for attribute in ("project", "title"):
        value = getattr(session, attribute)
        if isinstance(value, str):
            setattr(session, attribute, fix(value))
    session.metadata = redact_value(session.metadata, fix, hide)
    for message in session.messages:
        message.text = fix(message.text)
        if message.reasoning:
            message.reasoning = fix(message.reasoning)
        for call in message.tool_calls:
            call.arguments = redact_value(call.arguments, fix, hide)
        for signal in message.signals:
            signal.detail = fix(signal.detail)
        message.metadata = redact_value(message.metadata, fix, hide)


def redact_value(
    value: Any, fix: Callable[[str], str], hide: Callable[[str], str] | None = None
) -> Any:
    """A JSON value with every string passed through ``fix``.

    A short single-line string under a secret-looking key (``password``,
    ``DB_TOKEN``, ``x-api-key``) goes through ``hide`` instead, which replaces it whole.
    """
    if isinstance(value, str):
        return fix(value)
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if hide is not None and isinstance(item, str) and _hidden_by_key(key, item):
                out[key] = hide(item)
            else:
                out[key] = redact_value(item, fix, hide)
        return out
    if isinstance(value, list):
        return [redact_value(item, fix, hide) for item in value]
    return value


def _hidden_by_key(key: Any, value: str) -> bool:
    return (
        isinstance(key, str)
        and secret_under(key, value)
        and _plausible_secret_value(value)
        and "\n" not in value
        and not _PLACEHOLDER.fullmatch(value)
    )
