"""The safe-name rule: a name a user gives is never a path.

Dataset and version names, run ids, session-id prefixes and collector session
names all end up joined to a workspace folder or used in a query. Joining an
unchecked name let ``dataset build --name ../sessions`` replace the workspace's
raw logs, so every such name passes :func:`check_name` first: one component,
no separators, no ``..``, not absolute, no NUL, no drive or device names, no
leading dot or dash (hidden files, options), a small portable character set
and a bounded length. The rule is the same everywhere, so a name valid for one
command is valid for all.
"""

from __future__ import annotations

import re

from mlx_rsi.errors import UsageError

MAX_NAME_CHARS = 100
# Letters and digits of any script, then '_', '-', '.', '+', '@' after the first char.
_ALLOWED = re.compile(r"[^\W_][\w.+@-]*|_[\w.+@-]*")
# Windows device names are refused with or without an extension (portable workspaces).
_DEVICES = frozenset(
    ["con", "prn", "aux", "nul"]
    + [f"com{i}" for i in range(1, 10)]
    + [f"lpt{i}" for i in range(1, 10)]
)
EXAMPLE = "letters, digits, '_', '-', '.', e.g. v1.2 or my_session"


def name_problem(value: object) -> str | None:
    """Why ``value`` is not a safe name, or None when it is one."""
    if not isinstance(value, str) or not value:
        return "is empty"
    return _path_problem(value) or _shape_problem(value)


def _path_problem(value: str) -> str | None:
    if "\0" in value:
        return "contains a NUL byte"
    if value.startswith(("/", "\\")):
        return "is an absolute path"
    if "/" in value or "\\" in value:
        return "contains a path separator"
    if len(value) >= 2 and value[1] == ":" and value[0].isascii() and value[0].isalpha():
        return "starts with a drive name"
    if ".." in value:
        return "contains '..'"
    return None


def _shape_problem(value: str) -> str | None:
    if len(value) > MAX_NAME_CHARS:
        return f"is longer than {MAX_NAME_CHARS} characters"
    if value[0] in ".-":
        return f"starts with '{value[0]}'"
    if value.endswith("."):
        return "ends with '.'"
    if not _ALLOWED.fullmatch(value):
        bad = next(c for c in value if not (c.isalnum() or c in "_.+@-"))
        return f"contains {bad!r}"
    if value.split(".")[0].lower() in _DEVICES:
        return "is a reserved device name"
    return None


def is_safe_name(value: object) -> bool:
    return name_problem(value) is None


def check_name(value: str, what: str) -> str:
    """``value`` when it is a safe name; else a one-line UsageError (exit 2) naming ``what``."""
    problem = name_problem(value)
    if problem is not None:
        raise UsageError(
            f"{what} {value!r} is not a plain name: it {problem}", hint=f"use {EXAMPLE}"
        )
    return value
