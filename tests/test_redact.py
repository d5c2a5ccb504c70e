"""Redaction: every planted secret kind is replaced by its typed placeholder, idempotently."""

from __future__ import annotations

import re

import pytest

from mlx_rsi.config import CurateConfig
from mlx_rsi.errors import ConfigError
from mlx_rsi.records import Message, Session, ToolCall
from mlx_rsi.redact import redact_session, redact_text

CFG = CurateConfig(usernames=("alice",), redact_current_user=False)

PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEA7bq1Zr9Xk3Qm0w2L8vN1pQ4sT6uY9zA3bC5dE7fG9hJ1kL3m\n"
    "N5pR7tV9xB1zD3fH5jK7mP9rT1vX3zA5cE7gI9kM1oQ3sU5wY7aC9eG1iK3mO5q\n"
    "-----END RSA PRIVATE KEY-----"
)

# (kind, text containing the secret, the secret value that must disappear)
PLANTED: list[tuple[str, str, str]] = [
    (
        "openai_key",
        "export OPENAI_API_KEY=sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
        "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
    ),
    (
        "openai_key",
        "key is sk-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe",
        "sk-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe",
    ),
    (
        "anthropic_key",
        "ANTHROPIC=sk-ant-api03-Qw3rTy6uIo9pAs2dFg5hJk8lZx1cVb4nM7-Zq",
        "sk-ant-api03-Qw3rTy6uIo9pAs2dFg5hJk8lZx1cVb4nM7-Zq",
    ),
    (
        "github_token",
        "git push https://x:ghp_aB3cD4eF5gH6iJ7kL8mN9oP0qR1sT2uV3wX4y@github.com",
        "ghp_aB3cD4eF5gH6iJ7kL8mN9oP0qR1sT2uV3wX4y",
    ),
    (
        "github_token",
        "token github_pat_11ABCDEFG0aBcDeFgHiJkL_mNoPqRsTuVwXyZ0123456789",
        "github_pat_11ABCDEFG0aBcDeFgHiJkL_mNoPqRsTuVwXyZ0123456789",
    ),
    ("aws_access_key", "aws_access_key_id = AKIAZ7Q3M5N2P8R4T6V1", "AKIAZ7Q3M5N2P8R4T6V1"),
    (
        "keyed_secret",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYzK9mQ2vL4t",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzK9mQ2vL4t",
    ),
    (
        "slack_token",
        "SLACK=xoxb-2048197352-9182736450912-Qm7Zr2Lk9Xw4Vt6Ns1Pb3Hc8",
        "xoxb-2048197352-9182736450912-Qm7Zr2Lk9Xw4Vt6Ns1Pb3Hc8",
    ),
    (
        "stripe_key",
        "stripe.api_key = 'sk_live_9zY8xW7vU6tS5rQ4pO3nM2lK'",
        "sk_live_9zY8xW7vU6tS5rQ4pO3nM2lK",
    ),
    (
        "jwt",
        "cookie eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZTEyMyJ9.Xq9zLw2Kv8Mn4Bp7Rt1Ys6Hd3Jf5Gc0",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZTEyMyJ9.Xq9zLw2Kv8Mn4Bp7Rt1Ys6Hd3Jf5Gc0",
    ),
    (
        "private_key",
        f"cat id_rsa\n{PEM}\n$ ",
        "MIIEowIBAAKCAQEA7bq1Zr9Xk3Qm0w2L8vN1pQ4sT6uY9zA3bC5dE7fG9hJ1kL3m",
    ),
    (
        "url_credentials",
        "DATABASE=postgres://admin:Hunt3rPass99@db.internal:5432/app",
        "Hunt3rPass99",
    ),
    (
        "bearer_token",
        'curl -H "Authorization: Bearer c2VjcmV0LXRva2VuLTQ4MjkxNzM2" https://api.x.io',
        "c2VjcmV0LXRva2VuLTQ4MjkxNzM2",
    ),
    (
        "npm_token",
        "//registry.npmjs.org/:_authToken=npm_Rk3Lm8Np2Qs7Tv1Wx6Yz9Ab4Cd0Ef5Gh2Jk",
        "npm_Rk3Lm8Np2Qs7Tv1Wx6Yz9Ab4Cd0Ef5Gh2Jk",
    ),
    (
        "pypi_token",
        "[pypi]\nusername = __token__\npassword = "
        "pypi-AgEIcHlwaS5vcmcCJDk4ZjFhM2IyLTc2ZTQtNDVmZC1iYzE4LWE5OGQ3ZjJjNjUxMAACKlszLCJ",
        "pypi-AgEIcHlwaS5vcmcCJDk4ZjFhM2IyLTc2ZTQtNDVmZC1iYzE4LWE5OGQ3ZjJjNjUxMAACKlszLCJ",
    ),
    ("keyed_secret", "DB_PASSWORD=s3cr3tP4ss", "s3cr3tP4ss"),
    ("keyed_secret", 'password = "Tr0ub4dor&3"', "Tr0ub4dor&3"),
    ("keyed_secret", '{"api_key": "q8Zr4Lm2Vx9Pt7Kw3Ns6"}', "q8Zr4Lm2Vx9Pt7Kw3Ns6"),
    (
        "huggingface_token",
        "HF_TOKEN hf_Qm7Zr2Lk9Xw4Vt6Ns1Pb3Hc8Jd5Fg0Ak",
        "hf_Qm7Zr2Lk9Xw4Vt6Ns1Pb3Hc8Jd5Fg0Ak",
    ),
    (
        "google_api_key",
        "maps key AIzaSyD4k9Lm2Np7Qr1St6Uv3Wx8Yz0Ab5Cd2Ef",
        "AIzaSyD4k9Lm2Np7Qr1St6Uv3Wx8Yz0Ab5Cd2Ef",
    ),
    ("gitlab_token", "GL glpat-Xk4Lm9Np2Qr7St1Uv6Wx3", "glpat-Xk4Lm9Np2Qr7St1Uv6Wx3"),
    (
        "sendgrid_key",
        "mail 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",
        "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",
    ),
    (
        "telegram_bot_token",
        "bot 123456789:AAHk3Lm8Np2Qs7Tv1Wx6Yz9Ab4Cd0Ef5Gh2J ready",
        "AAHk3Lm8Np2Qs7Tv1Wx6Yz9Ab4Cd0Ef5Gh2J",
    ),
    ("email", "ping alice.smith@corp-mail.io about it", "alice.smith@corp-mail.io"),
    ("home_path", "cd /home/bob/projects/x", "/home/bob"),
    ("home_path", "open /Users/carol/Desktop", "/Users/carol"),
    ("home_path", r"dir C:\Users\dave\repo", r"C:\Users\dave"),
    ("username", "ask alice about it", "alice"),
    ("image", "<img src='data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB'>", "iVBORw0KGgo"),
]


@pytest.mark.parametrize(("kind", "text", "secret"), PLANTED, ids=[p[0] for p in PLANTED])
def test_each_kind_is_replaced_and_counted(kind: str, text: str, secret: str) -> None:
    redacted, counts = redact_text(text, CFG)
    assert secret not in redacted
    assert counts[kind] >= 1, counts
    again, more = redact_text(redacted, CFG)
    assert again == redacted  # idempotent
    assert not more


def test_placeholders_are_typed() -> None:
    redacted, _ = redact_text("export GITHUB_TOKEN=ghp_aB3cD4eF5gH6iJ7kL8mN9oP0qR1sT2uV3wX4y", CFG)
    assert redacted == "export GITHUB_TOKEN=<SECRET:github_token>"
    redacted, _ = redact_text("mail bob@acme-corp.com from /home/bob/x", CFG)
    assert redacted == "mail <EMAIL> from <HOME>/x"


CODE_THAT_STAYS = [
    "def f(token): return token  # token = get_token()",
    "self.api_key = api_key\nkey = self.key",
    "for key, value in d.items(): print(key)",
    "def create(cls, markdown: Markdown, token: Token) -> Paragraph:",
    'key = "APPDATA" if roaming else "LOCALAPPDATA"',
    "MAX_TOKENS=512\nTOKENIZERS_PARALLELISM=false",
    "git clone git@github.com:org/repo.git",
    "scikit-learn's sk-learn alias and task-management-system-for-big-projects",
    "password = os.environ['DB_PASSWORD']",
    "The key: use environment variables, not the command line.",
    "commit 4f2a9c1e8b7d6f5a3c2e1d0b9a8f7e6d5c4b3a21",
]


@pytest.mark.parametrize("text", CODE_THAT_STAYS)
def test_ordinary_code_and_prose_are_left_alone(text: str) -> None:
    assert redact_text(text, CFG) == (text, {})


def test_pem_block_without_end_is_still_removed() -> None:
    truncated = PEM.rsplit("\n", 1)[0]  # output cut before the END line
    redacted, counts = redact_text(f"{truncated}\n", CFG)
    assert "MIIE" not in redacted and counts["private_key"] == 1


def test_pem_with_escaped_newlines_inside_json() -> None:
    escaped = PEM.replace("\n", "\\n")
    redacted, _ = redact_text(f'{{"private_key": "{escaped}", "type": "x"}}', CFG)
    assert "MIIE" not in redacted and "7bq1" not in redacted
    assert '"type": "x"' in redacted


def test_long_base64_blob_is_dropped() -> None:
    blob = "QUJD" * 150
    redacted, counts = redact_text(f"payload: {blob} end", CFG)
    assert redacted == "payload: <BASE64> end" and counts["base64"] == 1


def test_email_allowlist_and_switch() -> None:
    text = "from noreply@github.com and user@example.com and x@corp.io"
    assert redact_text(text, CFG)[0] == "from noreply@github.com and user@example.com and <EMAIL>"
    off = CurateConfig(redact_emails=False, redact_current_user=False)
    assert redact_text(text, off)[0] == text


def test_custom_secret_pattern_and_invalid_regex() -> None:
    cfg = CurateConfig(
        secret_patterns={"acme_key": r"acme_[0-9a-f]{16}"}, redact_current_user=False
    )
    assert redact_text("use acme_0123456789abcdef now", cfg)[0] == "use <SECRET:acme_key> now"
    bad = CurateConfig(secret_patterns={"broken": "acme_("}, redact_current_user=False)
    with pytest.raises(ConfigError, match=r"curate\.secret_patterns\.broken: invalid regex"):
        redact_text("x", bad)


def _session() -> Session:
    env_dump = "HOME=/home/alice\nSTRIPE_SECRET=Zq8Wm3Lx7Kv2Np9Rt4Ys\nPATH=/usr/bin"
    return Session(
        id="s1",
        source_format="claude_code",
        path="/tmp/x.jsonl",
        project="/home/alice/proj",
        messages=[
            Message("user", "run env please", key="1"),
            Message(
                "assistant",
                "Running it.",
                key="2",
                reasoning="the token is ghp_aB3cD4eF5gH6iJ7kL8mN9oP0qR1sT2uV3wX4y",
                tool_calls=[
                    ToolCall(
                        "t1",
                        "Bash",
                        {
                            "command": "curl -u admin:Zq8Wm3Lx7Kv2Np9Rt4Ys https://x.io",
                            "env": {"DB_PASSWORD": "plainpassword", "n": [1, "alice@corp.io"]},
                        },
                    )
                ],
            ),
            Message("tool", env_dump, key="3", tool_call_id="t1", name="Bash"),
            Message(
                "assistant",
                "I will not repeat Zq8Wm3Lx7Kv2Np9Rt4Ys.",
                key="4",
                metadata={"toolUseResult": {"stdout": env_dump}},
            ),
        ],
    )


def test_session_is_redacted_everywhere_in_place() -> None:
    session = _session()
    counts = redact_session(session, CFG)
    dumped = repr(session.to_dict())
    for secret in (
        "Zq8Wm3Lx7Kv2Np9Rt4Ys",
        "ghp_aB3cD4eF5gH6iJ7kL8mN9oP0qR1sT2uV3wX4y",
        "plainpassword",
        "alice",
    ):
        assert secret not in dumped, secret
    assert session.project == "<HOME>/proj"
    args = session.messages[1].tool_calls[0].arguments
    assert args["env"]["DB_PASSWORD"] == "<SECRET:keyed_secret>"
    assert args["env"]["n"] == [1, "<EMAIL>"]
    # The value first seen in the env dump is also hidden where it appears bare.
    assert session.messages[3].text == "I will not repeat <SECRET:keyed_secret>."
    assert counts["github_token"] == 1 and counts["keyed_secret"] >= 3
    assert redact_session(session, CFG) == {}  # idempotent on a redacted session


def test_no_placeholder_is_ever_nested() -> None:
    for _, text, _ in PLANTED:
        redacted, _ = redact_text(text, CFG)
        assert not re.search(r"<[^<>]*<", redacted.replace("<img", "")), redacted


def test_one_line_json_is_scanned_in_pieces_and_nothing_is_missed() -> None:
    import json

    records = [{"key": f"item{i}", "api_key": f"Zq8Wm{i}Lx7Kv2Np9Rt{i}Ys"} for i in range(400)]
    text = json.dumps(records)  # one ~25 kB line
    redacted, counts = redact_text(text, CFG)
    assert counts["keyed_secret"] == 400
    assert "Zq8Wm" not in redacted
    assert '"key": "item399"' in redacted  # a bare "key" with a short value is data


def test_key_with_a_long_generated_value_is_a_secret() -> None:
    text = '{"key": "Zq8Wm3Lx7Kv2Np9Rt4Ys"}'
    assert redact_text(text, CFG)[0] == '{"key": "<SECRET:keyed_secret>"}'
