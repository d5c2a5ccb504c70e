"""The :class:`Redactor`: the stages in order, for one configuration.

Anchored rules, base64 blobs, keyed assignments and detect-secrets plugins on
candidate lines (cached by line content), then card/phone numbers, emails, home
paths, file owners and user names. :func:`redactor_for` builds (and caches) the
redactor of a ``curate`` config.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlx_rsi.redact.keyed import ASSIGNMENT, apply_keyed, candidate_lines, line_spans, lines_at
from mlx_rsi.redact.pii import (
    EMAIL_AT,
    EMAIL_LOCAL,
    OWNER_MARKERS,
    current_user,
    home_users,
    may_hold_number,
    redact_homes,
    redact_numbers,
    redact_owners,
)
from mlx_rsi.redact.placeholders import BASE64, EMAIL, USER, secret_placeholder
from mlx_rsi.redact.plugins import (
    DS_KINDS,
    Gate,
    LineResult,
    keep_finding,
    load_plugins,
    plugin_gate,
    whole_token,
)
from mlx_rsi.redact.prescan import Check, Hints, SessionScan, anchor_present
from mlx_rsi.redact.rules import (
    BASE64_RUN,
    RULES,
    Rule,
    apply_rule,
    compile_secret_patterns,
    slug,
    sub_count,
)

if TYPE_CHECKING:
    from mlx_rsi.config import CurateConfig


@dataclass
class Redactor:
    """Compiled rules for one configuration; stateless apart from its caches."""

    emails: bool = True
    home_paths: bool = True
    usernames: tuple[str, ...] = ()
    email_allowlist: tuple[str, ...] = ()
    extra_rules: tuple[Rule, ...] = ()
    base64_min_chars: int = 400
    # Shortcuts that never change the output; off in :meth:`without_shortcuts`.
    plugin_gates: bool = True
    line_cache: bool = True
    _plugins: list[tuple[Any, str, Gate | None]] = field(
        default_factory=list, init=False, repr=False
    )
    _user_rx: re.Pattern[str] | None = field(default=None, init=False, repr=False)
    _base64_rx: re.Pattern[str] | None = field(default=None, init=False, repr=False)
    _anchors: list[Check] = field(default_factory=list, init=False, repr=False)
    _scan: SessionScan | None = field(default=None, init=False, repr=False)
    _lines: dict[str, LineResult] = field(default_factory=dict, init=False, repr=False)
    _derived: dict[tuple[str, ...], Redactor] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._plugins = [
            (
                plugin,
                DS_KINDS.get(plugin.secret_type, slug(plugin.secret_type)),
                plugin_gate(plugin) if self.plugin_gates else None,
            )
            for plugin in load_plugins()
        ]
        names = sorted({u for u in self.usernames if u}, key=len, reverse=True)
        if names:
            alternatives = "|".join(re.escape(u) for u in names)
            self._user_rx = re.compile(rf"(?<![A-Za-z0-9_])(?:{alternatives})(?![A-Za-z0-9_])")
        self._base64_rx = re.compile(BASE64_RUN.format(n=self.base64_min_chars))
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

    def without_shortcuts(self) -> Redactor:
        """The same redactor with no plugin gates and no line cache: what the fast
        paths must equal (``tests/test_redact_equivalence.py``)."""
        return self._copy(self.usernames, plugin_gates=False, line_cache=False)

    def _copy(
        self, usernames: tuple[str, ...], *, plugin_gates: bool, line_cache: bool
    ) -> Redactor:
        return dataclasses.replace(
            self, usernames=usernames, plugin_gates=plugin_gates, line_cache=line_cache
        )

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
            derived = self._copy(
                (*self.usernames, *added),
                plugin_gates=self.plugin_gates,
                line_cache=self.line_cache,
            )
            derived._plugins, derived._lines, derived._scan = self._plugins, self._lines, self._scan
            self._derived[added] = derived
        return derived

    # ---------------------------------------------------------------- public

    def session_hints(
        self, texts: Sequence[str]
    ) -> tuple[list[Hints | None], tuple[str, ...]] | None:
        """Per text, what the stages can find in it (None: nothing), from one pass.

        ``texts`` are a session's texts; see :class:`SessionScan`. None when the
        pre-scan cannot vouch for positions (then redact text by text).
        """
        if self._scan is None:
            self._scan = SessionScan(self._anchors, self.base64_min_chars)
        users = self.usernames if self._user_rx is not None else ()
        return self._scan.hints(texts, emails=self.emails, usernames=users)

    def anchors_in(self, text: str) -> list[Check]:
        """The rule anchors present in ``text`` (a whole session's texts joined).

        Checking each text against only these saves most of the per-text checks.
        """
        return [check for check in self._anchors if anchor_present(check, text)]

    def redact(
        self,
        text: str,
        found: dict[str, str] | None = None,
        *,
        anchors: list[Check] | None = None,
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
        hits = sorted({i for check in candidates if anchor_present(check, text) for i in check[2]})
        if hits:
            rules = self.rules
            for index in hits:
                text = apply_rule(rules[index], text, counts, found)
        text = self._base64_blobs(text, counts)
        text = self._detect_secrets(text, counts, found)
        owners = any(marker in text for marker in OWNER_MARKERS)
        text = self._last_stages(
            text, counts, homes=True, numbers=may_hold_number(text), owners=owners
        )
        return text, counts

    def redact_hinted(
        self, text: str, found: dict[str, str] | None, hints: Hints
    ) -> tuple[str, Counter[str]]:
        """:meth:`redact` for a text whose :class:`Hints` the session pre-scan gave.

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
                text = apply_rule(rules[index], text, counts, found)
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
            text = redact_numbers(text, counts)
        if self.emails and "@" in text:
            text = self._emails(text, counts)
        if self.home_paths and homes:
            text = redact_homes(text, counts)
        if owners:
            text = redact_owners(text, counts, self.usernames)
        if self._user_rx is not None and any(name in text for name in self.usernames):
            text = sub_count(self._user_rx, USER, "username", text, counts)
        return text

    def _base64_blobs(self, text: str, counts: Counter[str]) -> str:
        if len(text) < self.base64_min_chars or self._base64_rx is None:
            return text
        lines = text.split("\n")
        if max(map(len, lines)) < self.base64_min_chars:
            return text  # a base64 run is within one line: none is long enough
        for index, line in enumerate(lines):
            if len(line) >= self.base64_min_chars:
                lines[index] = sub_count(self._base64_rx, BASE64, "base64", line, counts)
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
            spans = line_spans(low, lines_at(low, assignments))
        else:
            spans = candidate_lines(low)
        if not spans:
            return text
        pieces: list[str] = []
        last = 0
        for start, end in spans:
            line = text[start:end]
            if not ASSIGNMENT.search(low, start, end):
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
            if self.line_cache:
                self._lines[line] = result
        new, kinds, values = result
        for kind, n in kinds:
            counts[kind] += n
        if found is not None:
            for value, kind in values:
                found.setdefault(value, kind)
        return new

    def _scan_line_once(self, line: str) -> LineResult:
        counts: Counter[str] = Counter()
        found: dict[str, str] = {}
        line = apply_keyed(line, counts, found)
        values: dict[str, str] = {}
        for plugin, kind, gate in self._plugins:
            if gate is not None and not gate(line):
                continue  # the plugin's patterns need what the line lacks
            for value in plugin.analyze_string(line):
                if keep_finding(value, line, kind):
                    values.setdefault(whole_token(value, line, kind), kind)
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
        for match in EMAIL_AT.finditer(text):
            local = EMAIL_LOCAL.search(text, max(last, match.start() - 64), match.start())
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


LINE_CACHE_SIZE = 16384  # candidate lines remembered (cleared whole when full)


DERIVED_CACHE_SIZE = 64  # redactors with a session's home users added


def redactor_for(cfg: CurateConfig) -> Redactor:
    """The (cached) redactor for a curate config."""
    users = tuple(getattr(cfg, "usernames", ()))
    if getattr(cfg, "redact_current_user", True):
        users = (*users, *current_user())
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


def redact_text(text: str, cfg: CurateConfig) -> tuple[str, Counter[str]]:
    """``text`` redacted under ``cfg``, with the number of replacements per kind."""
    return redactor_for(cfg).for_texts([text]).redact(text)
