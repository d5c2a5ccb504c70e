"""Personal data that is not a key: emails, home paths, user names, card and phone numbers.

User names are replaced where they are known (configured, the login name, the users
of home folders a session shows) and where their place says what they are: the
owner column of ``ls -l`` and the arguments of ``chown``/``chgrp``.
"""

from __future__ import annotations

import functools
import getpass
import re
from collections import Counter
from collections.abc import Callable, Sequence

from mlx_rsi.redact.literals import Hits, fold_text, multi_finder
from mlx_rsi.redact.placeholders import HOME, PLACEHOLDER, USER, secret_placeholder
from mlx_rsi.redact.rules import sub_count

EMAIL_AT = re.compile(
    r"@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}\b"
)


EMAIL_LOCAL = re.compile(r"[A-Za-z0-9._%+\-]+$")


_HOME_POSIX = re.compile(r"(?<![\w.])/(?:home|Users)/([A-Za-z0-9._\-]+)")


_HOME_WINDOWS = re.compile(
    r"[A-Za-z]:(?:\\\\|\\|/)(?:Users|Documents and Settings)(?:\\\\|\\|/)([^\\/\s\"'<>]+)"
)


_HOME_DASHED = re.compile(r"-(?:home|Users)-([A-Za-z0-9._]+)(?=-|$)")


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


def redact_homes(text: str, counts: Counter[str]) -> str:
    if "/home/" in text or "/Users/" in text:
        text = sub_count(_HOME_POSIX, HOME, "home_path", text, counts)
    if "Users" in text or "Documents and Settings" in text:
        text = sub_count(_HOME_WINDOWS, HOME, "home_path", text, counts)
    if "-home-" in text or "-Users-" in text:
        text = sub_count(_HOME_DASHED, HOME, "home_path", text, counts)
    return text


NUMBER_NEEDLES = (
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
    r"(?![\w\-]|\.[0-9A-Za-z]|[ \-][0-9])"
)


def may_hold_number(text: str) -> bool:
    return bool(number_finder()(fold_text(text)))


@functools.lru_cache(maxsize=1)
def number_finder() -> Callable[[bytes], Hits]:
    return multi_finder([n.decode() for n in NUMBER_NEEDLES], overlapping=False)


def _number_windows(text: str) -> list[tuple[int, int]]:
    """Merged (start, end) windows around every number-shaped needle in ``text``."""
    spans = [
        (max(0, start - _WINDOW_BEFORE), start + _WINDOW_AFTER)
        for _, start, _ in number_finder()(fold_text(text))
    ]
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def redact_numbers(text: str, counts: Counter[str]) -> str:
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
OWNER_MARKERS = ("rw-", "r-x", "r--", "rwx", "chown", "chgrp")


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


def redact_owners(text: str, counts: Counter[str], usernames: Sequence[str]) -> str:
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
    if not personal or PLACEHOLDER.fullmatch(name):
        return name
    counts["username"] += 1
    return USER


@functools.lru_cache(maxsize=1)
def current_user() -> tuple[str, ...]:
    try:
        name = getpass.getuser()
    except (OSError, KeyError):
        return ()
    if not _identifying(name):
        return ()
    return (name,)
