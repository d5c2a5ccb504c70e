"""Task suites: YAML files of cases whose answers are checked by assertions.

A suite is what "better" means for one purpose. The assertion vocabulary is
promptfoo's, which users already know (FACTS.md)::

    name: my-tasks            # optional (default: the file's stem)
    kind: primary             # primary (must improve) | guard (must not regress)
    cases:
      - input: How do I secure API tokens?
        category: security     # optional (default: general)
        expected: [environment variables]   # the seed's form = icontains-all
        must_not_contain: [command line]    # = not-icontains of each
        assert:
          - {type: icontains, value: keychain}
          - {type: contains-any, value: [os.environ, getenv]}
          - {type: not-regex, value: "(?i)plain text"}

Types: ``contains``, ``icontains``, ``contains-any``, ``contains-all``
(``icontains-any``/``icontains-all`` too), ``regex``, ``equals``; each negatable
with a ``not-`` prefix. A case passes when every assertion holds; a failed
negated assertion is also a *violation* (the answer said what it must not).
A schema problem is one :class:`SuiteError` line naming file, case and field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlx_rsi import atomic
from mlx_rsi.errors import UsageError

KINDS = ("primary", "guard")
BASE_TYPES = (
    "contains",
    "icontains",
    "contains-any",
    "contains-all",
    "icontains-any",
    "icontains-all",
    "regex",
    "equals",
)
LIST_TYPES = frozenset({"contains-any", "contains-all", "icontains-any", "icontains-all"})
CASE_KEYS = ("id", "input", "category", "expected", "must_not_contain", "assert")


class SuiteError(UsageError):
    """A suite file that does not follow the schema (file, case and field named)."""


@dataclass(frozen=True)
class Assertion:
    type: str  # one of BASE_TYPES, maybe with a "not-" prefix
    value: str | tuple[str, ...]

    @property
    def negated(self) -> bool:
        return self.type.startswith("not-")

    def holds(self, answer: str) -> bool:
        """Whether the answer satisfies this assertion (negation applied)."""
        base = self.type.removeprefix("not-")
        result = _check(base, self.value, answer)
        return not result if self.negated else result

    def describe(self) -> str:
        value = ", ".join(self.value) if isinstance(self.value, tuple) else self.value
        return f"{self.type}: {value}"


@dataclass(frozen=True)
class Case:
    id: str
    input: str
    category: str = "general"
    asserts: tuple[Assertion, ...] = ()


@dataclass(frozen=True)
class Suite:
    name: str
    kind: str = "primary"
    cases: tuple[Case, ...] = ()
    source: str = ""  # where it came from (a path, "held-out", "built-in")


@dataclass(frozen=True)
class Outcome:
    """One answer judged against one case."""

    passed: bool
    violations: tuple[str, ...] = ()  # negated assertions the answer broke
    failed: tuple[str, ...] = ()  # every assertion that did not hold


def judge(case: Case, answer: str) -> Outcome:
    failed = tuple(a.describe() for a in case.asserts if not a.holds(answer))
    violations = tuple(a.describe() for a in case.asserts if a.negated and not a.holds(answer))
    return Outcome(not failed, violations, failed)


def _check(base: str, value: str | tuple[str, ...], answer: str) -> bool:
    if base == "equals":
        return answer.strip() == str(value).strip()
    if base == "regex":
        return re.search(str(value), answer) is not None
    lowered = base.startswith("i")
    haystack = answer.lower() if lowered else answer
    needles = value if isinstance(value, tuple) else (value,)
    needles = tuple(n.lower() for n in needles) if lowered else needles
    found = [n in haystack for n in needles]
    if base.endswith("-any"):
        return any(found)
    return all(found)


# --------------------------------------------------------------------------- loading


def read_yaml(path: Path, what: str = "suite") -> Any:
    """The YAML data of a suite-like file; a missing or unreadable one is one SuiteError line."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise SuiteError(f"{what} file not found: {path}") from e
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SuiteError(f"{path}: cannot read {what}: {first}") from e


def load_suite(path: Path, *, kind: str | None = None) -> Suite:
    """The suite in ``path``; ``kind`` overrides the file's own."""
    suite = parse_suite(read_yaml(path), str(path), default_name=path.stem)
    if kind is not None and kind != suite.kind:
        suite = Suite(suite.name, kind, suite.cases, suite.source)
    return suite


def parse_suite(raw: Any, where: str, *, default_name: str = "suite") -> Suite:
    """A suite from plain YAML data; ``where`` names the file in errors."""
    if isinstance(raw, list):
        raw = {"cases": raw}
    if not isinstance(raw, dict):
        raise SuiteError(f"{where}: a suite is a mapping with 'cases' (or a list of cases)")
    unknown = sorted(set(raw) - {"name", "kind", "cases", "description"})
    if unknown:
        raise SuiteError(f"{where}: unknown key '{unknown[0]}' (use name, kind, cases)")
    kind = str(raw.get("kind") or "primary")
    if kind not in KINDS:
        raise SuiteError(f"{where}: kind must be primary or guard, got {kind!r}")
    cases = raw.get("cases")
    if not isinstance(cases, list) or not cases:
        raise SuiteError(f"{where}: 'cases' must be a non-empty list")
    parsed = [parse_case(c, where, n) for n, c in enumerate(cases, start=1)]
    _check_unique_ids(parsed, where)
    return Suite(str(raw.get("name") or default_name), kind, tuple(parsed), where)


def parse_case(raw: Any, where: str, number: int) -> Case:
    label = f"{where}: case {number}"
    if not isinstance(raw, dict):
        raise SuiteError(f"{label}: a case is a mapping with 'input'")
    unknown = sorted(set(raw) - set(CASE_KEYS))
    if unknown:
        raise SuiteError(f"{label}: unknown field '{unknown[0]}' (fields: {', '.join(CASE_KEYS)})")
    text = raw.get("input")
    if not isinstance(text, str) or not text.strip():
        raise SuiteError(f"{label}: field 'input' must be a non-empty string")
    case_id = str(raw.get("id") or f"{number}")
    label = f"{where}: case {case_id}"
    asserts = list(_seed_asserts(raw, label))
    items = raw.get("assert") or []
    if not isinstance(items, list):
        raise SuiteError(f"{label}: field 'assert' must be a list of {{type, value}}")
    asserts += [_parse_assertion(item, f"{label}: assert[{i}]") for i, item in enumerate(items)]
    if not asserts:
        raise SuiteError(
            f"{label}: no assertions (give 'expected', 'must_not_contain' or 'assert')"
        )
    category = str(raw.get("category") or "general")
    return Case(case_id, text, category, tuple(asserts))


def _seed_asserts(raw: dict[str, Any], label: str) -> Iterable[Assertion]:
    expected = raw.get("expected")
    if expected is not None:
        yield Assertion("icontains-all", _strings(expected, f"{label}: field 'expected'"))
    banned = raw.get("must_not_contain")
    if banned is not None:
        for phrase in _strings(banned, f"{label}: field 'must_not_contain'"):
            yield Assertion("not-icontains", phrase)


def _parse_assertion(item: Any, label: str) -> Assertion:
    if not isinstance(item, dict) or "type" not in item:
        raise SuiteError(f"{label}: an assertion is a mapping with 'type' and 'value'")
    kind = str(item["type"])
    base = kind.removeprefix("not-")
    if base not in BASE_TYPES:
        allowed = ", ".join(BASE_TYPES)
        raise SuiteError(f"{label}: field 'type' {kind!r} is not one of {allowed} (or not-…)")
    extra = sorted(set(item) - {"type", "value"})
    if extra:
        raise SuiteError(f"{label}: unknown field '{extra[0]}' (type, value)")
    if "value" not in item:
        raise SuiteError(f"{label}: field 'value' is missing")
    value = item["value"]
    if base in LIST_TYPES:
        return Assertion(kind, _strings(value, f"{label}: field 'value'"))
    if not isinstance(value, str | int | float) or isinstance(value, bool) or str(value) == "":
        raise SuiteError(f"{label}: field 'value' must be a non-empty string for {kind}")
    if base == "regex":
        try:
            re.compile(str(value))
        except re.error as e:
            raise SuiteError(f"{label}: field 'value' is not a valid regex: {e}") from e
    return Assertion(kind, str(value))


def _strings(value: Any, label: str) -> tuple[str, ...]:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not value:
        raise SuiteError(f"{label} must be a string or a non-empty list of strings")
    out = []
    for item in value:
        if not isinstance(item, str | int | float) or isinstance(item, bool) or str(item) == "":
            raise SuiteError(f"{label} must hold non-empty strings, got {item!r}")
        out.append(str(item))
    return tuple(out)


def _check_unique_ids(cases: list[Case], where: str) -> None:
    seen: set[str] = set()
    for case in cases:
        if case.id in seen:
            raise SuiteError(f"{where}: case {case.id}: field 'id' repeats an earlier case's id")
        seen.add(case.id)


# --------------------------------------------------------------------------- writing


def suite_to_plain(suite: Suite) -> dict[str, Any]:
    """Plain YAML data for ``suite`` (parse_suite reads it back unchanged)."""
    return {
        "name": suite.name,
        "kind": suite.kind,
        "cases": [
            {
                "id": c.id,
                "input": c.input,
                "category": c.category,
                "assert": [
                    {
                        "type": a.type,
                        "value": list(a.value) if isinstance(a.value, tuple) else a.value,
                    }
                    for a in c.asserts
                ],
            }
            for c in suite.cases
        ],
    }


def write_suite(path: Path, suite: Suite) -> None:
    text = yaml.safe_dump(suite_to_plain(suite), sort_keys=False, allow_unicode=True, width=100)
    atomic.write_text(path, text)


@dataclass
class SuiteSet:
    """The suites one evaluation runs: primary ones must improve, guards must not regress."""

    primary: list[Suite] = field(default_factory=list)
    guard: list[Suite] = field(default_factory=list)

    def all(self) -> list[Suite]:
        return [*self.primary, *self.guard]
