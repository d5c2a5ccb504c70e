"""redact_session (session pre-scan, gates, caches) equals redacting every text in full.

Through public functions only: the reference walks the same slots
(``session_slots``) with the redactor's ``without_shortcuts()`` copy, every text
through every stage, then replaces the secret values found anywhere.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import random
from collections import Counter

import orjson
import pytest

from mlx_rsi.config import CurateConfig
from mlx_rsi.records import Message, Session
from mlx_rsi.redact import (
    redact_session,
    redactor_for,
    replace_known,
    secret_placeholder,
    session_slots,
)

PIECES = [
    "export GITHUB_TOKEN=ghp_aB3cD4eF5gH6iJ7kL8mN9oP0qR1sT2uV3wX4y",
    "DATABASE_URL=postgres://admin:Hunt3rPass99@db.internal:5432/app",
    'curl -H "Authorization: Bearer c2VjcmV0LXRva2VuLTQ4MjkxNzM2" https://api.x.io',
    "mail alice.smith@corp-mail.io",
    "/home/alice/p",
    "open /Users/dave/code",
    "C:\\Users\\bob\\x",
    "-home-carol-p",
    'my_secret_value: "hunter2 hunter2"',
    'String password = "correct horse battery";',
    "db_pass = 'Zq8xWv7uTs6r'",
    'conf.pwd: "Xy7kLm9QrT"',
    '{"apiKey": "Zx9Yw8Vu7Ts6Rq5Po4Nm", "key": "item7"}',
    "blob " + base64.b64encode(bytes(range(256)) * 2).decode(),
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA"
    + "A" * 64
    + "\n-----END RSA PRIVATE KEY-----",
    "ticket CORP-123456 done",
    "ΣΑΣ password = 'Zq8xWv7uTs6rΣ' naïve 🙂 token: 'abc123def456ghi789'",
    "İstanbul secret_key = 'aZ8kLmN0pQ7rStUvWx'",
    "run it with Zx9Yw8Vu7Ts6Rq5Po4Nm now",
    "def f(token: Token) -> None:\n    self.token = token\n    return max_tokens",
    "x" * 1200 + ",password=Hunter22Hunter22," + "y" * 1200,
    "plain words only",
    "-rw-r--r--  1 jdoe  jdoe  12 Jan  1 12:00 a.py\nsudo chown -R jdoe:staff /srv",
    "cd /home/jdoe/x && whoami\njdoe",
    "card 4111 1111 1111 1111, call +1 415-555-0132 or 4155550132",
    'Client("AC3f9e1d7c5b3a29180f6e4d2c0b9a8f71", "9f8e7d6c5b4a39281706f5e4d3c2b1a0")',
    "SECRET_KEY=k3l(9x)#2m!q8w&zp4^v7\nmysql -u root -pS3cretPw9 db",
    '"sessionId": "3f2b8c1e-4d5a-4b6c-9e7f-0a1b2c3d4e5f", "model": "claude-3-5-sonnet-20241022"',
    "\u212aEY = 'Zq8xWv7uTs6r'",
]


def reference(session: Session, cfg: CurateConfig) -> Counter[str]:
    """The pipeline without shortcuts: every text through every stage and plugin."""
    slots = session_slots(session)
    texts = [slot.text for slot in slots]
    redactor = redactor_for(cfg).for_texts(texts).without_shortcuts()
    counts: Counter[str] = Counter()
    found: dict[str, str] = {}
    outputs = []
    for slot, text in zip(slots, texts, strict=True):
        new, n = redactor.redact(text, found)
        counts.update(n)
        if slot.hidden and new == text:  # a value under a secret-looking key
            counts["keyed_secret"] += 1
            if len(text) >= 8:
                found.setdefault(text, "keyed_secret")
            new = secret_placeholder("keyed_secret")
        outputs.append(new)
    for slot, new in zip(slots, outputs, strict=True):
        slot.set(replace_known(new, found, counts) if found else new)
    return counts


def sessions(seed: int) -> list[Session]:
    rng = random.Random(seed)
    out = []
    for n in range(20):
        messages = []
        for i in range(rng.randint(1, 8)):
            text = "\n".join(rng.choice(PIECES) for _ in range(rng.randint(1, 4)))
            metadata = (
                {"api_key": "Qq1Ww2Ee3Rr4Tt5", "note": text[:40]} if rng.random() < 0.3 else {}
            )
            messages.append(
                Message("user" if i % 2 else "tool", text, key=str(i), metadata=metadata)
            )
        out.append(
            Session(
                id=str(n),
                source_format="t",
                path="t",
                messages=messages,
                project="/home/alice/p",
                metadata={"sessionId": f"s-{seed}-{n}-0123456789"},
            )
        )
    return out


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"usernames": ("alice", "bob")},
        {"secret_patterns": {"corp": r"CORP-[0-9]{6}"}},
        {"redact_emails": False, "redact_home_paths": False},
        {"base64_min_chars": 40},
    ],
)
def test_redact_session_equals_full_redaction_of_every_text(options):
    cfg = dataclasses.replace(CurateConfig(), **options)
    for session in sessions(seed=len(options)):
        fast, slow = copy.deepcopy(session), copy.deepcopy(session)
        assert redact_session(fast, cfg) == reference(slow, cfg)
        dump = orjson.OPT_NON_STR_KEYS
        assert orjson.dumps(fast, option=dump) == orjson.dumps(slow, option=dump)
