"""Secrets that once got through, and redactions that once corrupted data (issue 8, 5-6).

Each case is what was seen in real logs (values replaced by made-up ones of the same
shape): the secret must be gone after ingest's redaction, the innocent text must be
left exactly as it was.
"""

from __future__ import annotations

import pytest

from mlx_rsi.config import CurateConfig
from mlx_rsi.records import Message, Session, ToolCall
from mlx_rsi.redact import redact_session, redact_text

CFG = CurateConfig(redact_current_user=False)

DISCORD = "MTEyMzQ1Njc4OTAxMjM0NTY3OA.GaBcDe.aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789ab"
TWILIO_SID = "AC3f9e1d7c5b3a29180f6e4d2c0b9a8f71"
TWILIO_TOKEN = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"

# (what, text, the values that must be gone)
LEAKS: list[tuple[str, str, tuple[str, ...]]] = [
    (
        "django key with parentheses",
        "SECRET_KEY=django-insecure-8f3k(2l9)x7q1w5e4#r6t0y",
        ("8f3k", "x7q1w5e4"),
    ),
    (
        "django key, unprefixed",
        "export SECRET_KEY=k3l(9x)#2m!q8w&zp4^v7",
        ("k3l(9x)", "q8w&zp4"),
    ),
    (
        "twilio client",
        f'client = Client("{TWILIO_SID}", "{TWILIO_TOKEN}")',
        (TWILIO_SID, TWILIO_TOKEN),
    ),
    (
        "twilio api key in prose",
        "use the API key SK71f0a2b3c4d5e6f708192a3b4c5d6e7f for the SMS sender",
        ("SK71f0a2b3c4d5e6f708192a3b4c5d6e7f",),
    ),
    ("discord bot.run", f"bot.run('{DISCORD}')", (DISCORD, DISCORD[-8:])),
    ("discord env", f"DISCORD_TOKEN={DISCORD}", (DISCORD, DISCORD[-8:])),
    ("sshpass quoted", "sshpass -p 'Hunter2Pass!' ssh deploy@10.0.0.5", ("Hunter2Pass",)),
    ("sshpass bare", "sshpass -pHunter2Pass ssh deploy@10.0.0.5", ("Hunter2Pass",)),
    ("mysql -p", "mysql -u root -pS3cretPw9 mydb", ("S3cretPw9",)),
    ("mysqldump --password", "mysqldump --password=S3cretPw9 -u app db", ("S3cretPw9",)),
    ("docker login -p", "docker login -u bob -p Dk9rPass77 registry.example.io", ("Dk9rPass77",)),
    ("curl -u", "curl -u admin:Zq8Wm3Lx7Kv2 https://api.x.io", ("Zq8Wm3Lx7Kv2",)),
    ("curl --user", 'curl --user "admin:Zq8Wm3Lx7Kv2" https://api.x.io', ("Zq8Wm3Lx7Kv2",)),
    (
        "vault token env",
        "export VAULT_TOKEN=hvs.CAESIJk3Lm8Np2Qs7Tv1Wx6Yz9Ab4Cd0Ef5Gh2Jk",
        ("hvs.CAESIJk3Lm8Np2Qs7Tv1Wx6Yz9Ab4Cd0Ef5Gh2Jk", "CAESIJk3Lm8"),
    ),
    (
        "vault token bare",
        "vault login hvs.CAESIJk3Lm8Np2Qs7Tv1Wx6Yz9Ab4Cd0Ef5Gh2JkQ",
        ("CAESIJk3Lm8",),
    ),
    (
        "shopify token",
        "the store token is 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",
        ("1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d",),
    ),
    ("card plain", "charge card 4111111111111111 now", ("4111111111111111",)),
    ("card spaced", "card 5555 5555 5555 4444 exp 12/29", ("5555 5555 5555 4444",)),
    ("card dashed amex", "amex 3782-822463-10005", ("822463",)),
    ("phone us", "call me at 415-555-0132 tomorrow", ("555-0132",)),
    ("phone parens", "office (415) 555-0199", ("555-0199",)),
    ("phone intl", "whatsapp +44 20 7946 0958", ("7946 0958",)),
    ("phone ending a sentence", "rotated; call 415-555-0132.", ("555-0132",)),
    ("card ending a sentence", "charge 4111111111111111.", ("4111111111111111",)),
]


@pytest.mark.parametrize(("text", "gone"), [c[1:] for c in LEAKS], ids=[c[0] for c in LEAKS])
def test_secret_that_got_through_is_redacted(text: str, gone: tuple[str, ...]) -> None:
    redacted, counts = redact_text(text, CFG)
    for value in gone:
        assert value not in redacted, redacted
    assert counts, redacted
    assert redact_text(redacted, CFG) == (redacted, {})  # idempotent


KEPT = [
    '"sessionId": "3f2b8c1e-4d5a-4b6c-9e7f-0a1b2c3d4e5f"',
    "session_id = '3f2b8c1e-4d5a-4b6c-9e7f-0a1b2c3d4e5f'",
    "const organizationUrlKey = dashboardData?.organizationUrlKey",
    "const apiKey = config!.apiKey ?? settings?.auth?.apiKey",
    '{"model": "claude-3-5-sonnet-20241022", "api_key": os.environ["KEY"]}',
    'model = "Qwen2.5-Coder-7B-Instruct-4bit"  # token budget: max_tokens = 512',
    'token_model = "meta-llama/Llama-3.1-8B-Instruct"',
    '{"token_type": "bearer", "expires_in": 3600}',
    'secret_name: "prod/db/credentials"',
    'cache_key = "user:1234:profile"',
    '"commit": "4f2a9c1e8b7d6f5a3c2e1d0b9a8f7e6d5c4b3a21", "token": null',
    "uptime 1700000000123 ms, order 20240115123456",
    "version 2.31.0.1234 build 415 555 0132",
]


@pytest.mark.parametrize("text", KEPT)
def test_innocent_text_is_left_alone(text: str) -> None:
    assert redact_text(text, CFG) == (text, {})


def test_session_id_is_not_a_secret_anywhere_in_the_session() -> None:
    sid = "3f2b8c1e-4d5a-4b6c-9e7f-0a1b2c3d4e5f"
    code = f"sessions = {{'{sid}': load('{sid}')}}"
    session = Session(
        id="s",
        source_format="t",
        path="t",
        metadata={"sessionId": sid, "model": "claude-opus-4-1-20250805"},
        messages=[
            Message("user", "fix it", key="1"),
            Message(
                "assistant",
                "ok",
                key="2",
                tool_calls=[ToolCall("t", "Write", {"content": code, "session_id": sid})],
            ),
            Message("tool", 'MODEL = "claude-opus-4-1-20250805"  # api_key=env', key="3"),
        ],
    )
    assert redact_session(session, CFG) == {}
    assert session.metadata["sessionId"] == sid
    assert session.messages[1].tool_calls[0].arguments["content"] == code


LS = """total 16
drwxr-xr-x  4 jdoe  staff   128 Jan  1 12:00 .
-rw-r--r--  1 jdoe  jdoe   1234 Jan  1 12:00 app.py
-rw-r--r--  1 root  wheel    12 Jan  1 12:00 root.txt
lrwxrwxrwx  1 ubuntu ubuntu   7 Jan  1 12:00 link -> app.py"""


def test_owner_column_of_ls_and_chown_are_redacted() -> None:
    redacted, counts = redact_text(LS, CFG)
    assert "jdoe" not in redacted and "ubuntu" not in redacted
    assert "<USER>  staff" in redacted and "root  wheel" in redacted
    assert counts["username"] == 5
    redacted, _ = redact_text("sudo chown -R jdoe:jdoe /srv/app && chgrp jdoe x", CFG)
    assert redacted == "sudo chown -R <USER>:<USER> /srv/app && chgrp <USER> x"
    assert redact_text("chown root:root /etc/x", CFG) == ("chown root:root /etc/x", {})


def test_home_dir_user_is_redacted_consistently_in_the_session() -> None:
    session = Session(
        id="s",
        source_format="t",
        path="t",
        project="/home/jdoe/proj",
        messages=[
            Message("user", "why does jdoe own this?", key="1"),
            Message("tool", "jdoe@laptop:~/proj$ whoami\njdoe", key="2"),
        ],
    )
    counts = redact_session(session, CFG)
    assert "jdoe" not in repr(session.to_dict())
    assert session.messages[0].text == "why does <USER> own this?"
    assert counts["username"] == 3 and counts["home_path"] == 1
