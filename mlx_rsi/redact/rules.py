"""The anchored rule table: key formats found by a literal anchor and a regex.

Each :class:`Rule` runs only when one of its anchors (``ghp_``, ``sk-``,
``-----BEGIN`` …) occurs in the text. They cover formats detect-secrets lacks or
gets wrong, passwords on command lines, PEM bodies across lines, URL credentials,
and drop base64 images; users add their own with ``curate.secret_patterns``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mlx_rsi.errors import ConfigError
from mlx_rsi.redact.keyed import plausible_secret_value
from mlx_rsi.redact.placeholders import IMAGE, PLACEHOLDER, secret_placeholder

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
        "vault_token",
        ["hvs.", "hvb.", "hvr."],
        r"(?<![A-Za-z0-9_])hv[sbr]\.[A-Za-z0-9_\-]{24,}",
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


BASE64_RUN = "[A-Za-z0-9+/]{{{n},}}={{0,2}}"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def apply_rule(rule: Rule, text: str, counts: Counter[str], found: dict[str, str] | None) -> str:
    replacement = rule.replacement()

    def substitute(match: re.Match[str]) -> str:
        group = rule.group
        if group < 0:
            group = next((i for i, g in enumerate(match.groups(), 1) if g is not None), 0)
        value = match.group(group)
        if not value or PLACEHOLDER.fullmatch(value):
            return match.group(0)
        if rule.accept is not None and not (rule.accept(value) and plausible_secret_value(value)):
            return match.group(0)
        counts[rule.kind] += 1
        if found is not None and rule.placeholder == "" and len(value) >= 8:
            found.setdefault(value.strip("'\""), rule.kind)
        start, end = match.span(group)
        offset = match.start()
        whole = match.group(0)
        return whole[: start - offset] + replacement + whole[end - offset :]

    return rule.pattern.sub(substitute, text)


def sub_count(
    pattern: re.Pattern[str], placeholder: str, kind: str, text: str, counts: Counter[str]
) -> str:
    new, n = pattern.subn(placeholder, text)
    if n:
        counts[kind] += n
    return new


def replace_known(text: str, found: dict[str, str], counts: Counter[str]) -> str:
    """Replace every literal occurrence of secret values found elsewhere."""
    return replace_values(text, sorted(found, key=len, reverse=True), found, counts)


def replace_values(
    text: str, values: list[str], found: dict[str, str], counts: Counter[str]
) -> str:
    """:func:`replace_known` with ``found``'s values already sorted longest first."""
    for value in values:
        if value in text:
            counts[found[value]] += text.count(value)
            text = text.replace(value, secret_placeholder(found[value]))
    return text


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
        rules.append(Rule(slug(kind) or "custom", ("",), compiled))
    return rules
