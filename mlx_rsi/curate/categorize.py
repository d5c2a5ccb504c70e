"""Categories from keyword / regex rules over the person's request.

``curate.categories`` maps a category to its rules, checked in order (the first
category with a matching rule wins; none → ``general``). A rule is a keyword,
matched case-insensitively at the start of a word ("fix" matches "fixing", not
"prefix"), or a regular expression written ``re:<pattern>`` (Python syntax,
case-insensitive). The defaults are the seed guide's five categories.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mlx_rsi.config import CATEGORY_REGEX_PREFIX
from mlx_rsi.errors import ConfigError

GENERAL = "general"
REGEX_PREFIX = CATEGORY_REGEX_PREFIX


@dataclass(frozen=True)
class Categorizer:
    rules: tuple[tuple[str, re.Pattern[str]], ...]

    def category(self, text: str) -> str:
        for name, pattern in self.rules:
            if pattern.search(text):
                return name
        return GENERAL


def compile_categories(categories: Mapping[str, Sequence[str]]) -> Categorizer:
    """One pattern per category; all invalid rules reported in one ConfigError line."""
    compiled = []
    problems = []
    for name, rules in categories.items():
        parts = []
        for index, rule in enumerate(rules):
            if rule.startswith(REGEX_PREFIX):
                body = rule[len(REGEX_PREFIX) :]
                try:
                    re.compile(body)
                except re.error as e:
                    problems.append(
                        f"curate.categories.{name}[{index}]: invalid regex {body!r}: {e}"
                    )
                    continue
                parts.append(f"(?:{body})")
            elif rule.strip():
                parts.append(rf"(?<![A-Za-z0-9]){re.escape(rule.strip())}")
        if parts:
            compiled.append((name, re.compile("|".join(parts), re.IGNORECASE)))
    if problems:
        raise ConfigError("; ".join(problems), hint="fix the rule (Python `re` syntax after 're:')")
    return Categorizer(tuple(compiled))
