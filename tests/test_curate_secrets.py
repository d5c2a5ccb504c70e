"""Planted secrets → none anywhere in the workspace (state store, datasets, exports, logs).

A Claude Code transcript and a collector session carry 20+ kinds of secrets: in the
prompt, tool-call arguments, tool outputs (an ``env`` dump, ``cat .env``), file
contents (read twice, as Claude Code does: ``tool_result`` and ``toolUseResult``),
reasoning and metadata. After ingest → curate → dataset → export, with every log
line written into the workspace, no file under the workspace holds any of them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlx_rsi.config import Config, CurateConfig
from mlx_rsi.curate import curate
from mlx_rsi.dataset import build_dataset, export_dataset
from mlx_rsi.ingest import ingest
from mlx_rsi.workspace import Workspace

PEM_BODY = [
    "MIIEowIBAAKCAQEAq7Bz9Xk3Qm0w2L8vN1pQ4sT6uY9zA3bC5dE7fG9hJ1kL3mN5",
    "pR7tV9xB1zD3fH5jK7mP9rT1vX3zA5cE7gI9kM1oQ3sU5wY7aC9eG1iK3mO5qS7u",
    "W9yB1dF3hJ5lN7pR9tV1xZ3bD5fH7jL9nP1rT3vX5zB7dF9hJ1lN3pR5tV7xZ9b",
]
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(PEM_BODY) + "\n-----END RSA PRIVATE KEY-----\n"
)

# kind → secret value (what must never be written anywhere)
SECRETS: dict[str, str] = {
    "openai_key": "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zQw7e",
    "anthropic_key": "sk-ant-api03-Qw3rTy6uIo9pAs2dFg5hJk8lZx1cVb4nM7-Zq0",
    "github_token": "ghp_aB3cD4eF5gH6iJ7kL8mN9oP0qR1sT2uV3wX4y",
    "github_pat": "github_pat_11ABCDEFG0aBcDeFgHiJkL_mNoPqRsTuVwXyZ0123456789",
    "aws_access_key": "AKIAZ7Q3M5N2P8R4T6V1",
    "aws_secret": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzK9mQ2vL4t",
    "slack_token": "xoxb-2048197352-9182736450912-Qm7Zr2Lk9Xw4Vt6Ns1Pb3Hc8",
    "slack_webhook": "https://hooks.slack.com/services/T0123ABCD/B0456EFGH/Xk4Lm9Np2Qr7St1Uv6Wx3Yz",
    "stripe_key": "sk_live_9zY8xW7vU6tS5rQ4pO3nM2lK",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZTEyMyJ9.Xq9zLw2Kv8Mn4Bp7Rt1Ys6Hd3Jf5Gc0",
    "private_key": PEM_BODY[1],
    "url_password": "Hunt3rPass99xyz",
    "bearer_token": "c2VjcmV0LXRva2VuLTQ4MjkxNzM2Zm9v",
    "npm_token": "npm_Rk3Lm8Np2Qs7Tv1Wx6Yz9Ab4Cd0Ef5Gh2Jk",
    "pypi_token": "pypi-AgEIcHlwaS5vcmcCJDk4ZjFhM2IyLTc2ZTQtNDVmZC1iYzE4LWE5OGQ3ZjJjNjUx"
    "MAACKlszLCJ",
    "db_password": "s3cr3tP4ssw0rdQ",
    "huggingface_token": "hf_Qm7Zr2Lk9Xw4Vt6Ns1Pb3Hc8Jd5Fg0Ak",
    "google_api_key": "AIzaSyD4k9Lm2Np7Qr1St6Uv3Wx8Yz0Ab5Cd2Ef",
    "gitlab_token": "glpat-Xk4Lm9Np2Qr7St1Uv6Wx3",
    "sendgrid_key": "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",
    "django_secret": "django-insecure-8f3k2l9x7q1w5e4r6t0y",
    "json_api_key": "q8Zr4Lm2Vx9Pt7Kw3Ns6Bv1Cx",
    "email": "alice.smith@corp-mail.io",
    "username": "alice",
    "image": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJ",
}

ENV_DUMP = f"""HOME=/home/alice
USER=alice
OPENAI_API_KEY={SECRETS["openai_key"]}
ANTHROPIC_API_KEY={SECRETS["anthropic_key"]}
AWS_ACCESS_KEY_ID={SECRETS["aws_access_key"]}
AWS_SECRET_ACCESS_KEY={SECRETS["aws_secret"]}
SLACK_BOT={SECRETS["slack_token"]}
SLACK_HOOK={SECRETS["slack_webhook"]}
STRIPE={SECRETS["stripe_key"]}
DATABASE_URL=postgres://admin:{SECRETS["url_password"]}@db.internal:5432/app
DB_PASSWORD={SECRETS["db_password"]}
HF_TOKEN={SECRETS["huggingface_token"]}
MAPS={SECRETS["google_api_key"]}
GL={SECRETS["gitlab_token"]}
MAIL={SECRETS["sendgrid_key"]}
SECRET_KEY={SECRETS["django_secret"]}
"""

NPMRC = f"//registry.npmjs.org/:_authToken={SECRETS['npm_token']}\nalways-auth=true\n"
PYPIRC = f"[pypi]\nusername = __token__\npassword = {SECRETS['pypi_token']}\n"
CONFIG_JSON = json.dumps({"api_key": SECRETS["json_api_key"], "owner": SECRETS["email"]})
CURL = (
    f'curl -H "Authorization: Bearer {SECRETS["bearer_token"]}" '
    f"https://api.corp-mail.io/v1/me && git push https://x:{SECRETS['github_pat']}@github.com/a/b"
)


def _claude_lines() -> Iterator[dict[str, object]]:
    session = "5f1c2a9e-0000-4000-8000-000000000001"
    base = {"sessionId": session, "cwd": "/home/alice/proj", "isSidechain": False, "version": "2.0"}
    parent = None
    counter = 0

    def record(kind: str, message: dict[str, object], **extra: object) -> dict[str, object]:
        nonlocal parent, counter
        counter += 1
        uid = f"u{counter:03d}"
        line = {
            **base,
            "type": kind,
            "uuid": uid,
            "parentUuid": parent,
            "timestamp": f"2026-11-20T10:{counter:02d}:00Z",
            "message": message,
            **extra,
        }
        parent = uid
        return line

    def tool_use(
        n: int, name: str, arguments: dict[str, object], text: str = ""
    ) -> dict[str, object]:
        content: list[dict[str, object]] = [
            {"type": "tool_use", "id": f"t{n}", "name": name, "input": arguments}
        ]
        if text:
            content.insert(0, {"type": "text", "text": text})
        return record(
            "assistant", {"id": f"msg{n}", "role": "assistant", "model": "m", "content": content}
        )

    def result(n: int, text: str, doubled: object) -> dict[str, object]:
        return record(
            "user",
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": f"t{n}", "content": text}],
            },
            toolUseResult=doubled,
        )

    yield record(
        "user",
        {
            "role": "user",
            "content": f"Fix the deploy script. My key is {SECRETS['github_token']}, "
            f"mail me at {SECRETS['email']} when done.",
        },
    )
    yield record(
        "assistant",
        {
            "id": "msg0",
            "role": "assistant",
            "model": "m",
            "content": [
                {"type": "thinking", "thinking": f"The user pasted {SECRETS['github_token']}."}
            ],
        },
    )
    yield tool_use(1, "Bash", {"command": "env"}, "Let me check the environment.")
    yield result(1, ENV_DUMP, {"stdout": ENV_DUMP, "stderr": "", "interrupted": False})
    yield tool_use(2, "Read", {"file_path": "/home/alice/proj/deploy_key.pem"})
    yield result(
        2,
        PEM,
        {"type": "text", "file": {"filePath": "/home/alice/proj/deploy_key.pem", "content": PEM}},
    )
    yield tool_use(3, "Read", {"file_path": "/home/alice/.npmrc"})
    yield result(3, NPMRC, {"file": {"content": NPMRC}})
    yield tool_use(4, "Read", {"file_path": "/home/alice/.pypirc"})
    yield result(4, PYPIRC, {"file": {"content": PYPIRC}})
    yield tool_use(5, "Read", {"file_path": "/home/alice/proj/config.json"})
    yield result(5, CONFIG_JSON, {"file": {"content": CONFIG_JSON}})
    yield tool_use(6, "Bash", {"command": CURL, "env": {"DB_PASSWORD": SECRETS["db_password"]}})
    yield result(6, f'{{"user": "alice", "token": "{SECRETS["jwt"]}"}}', {"stdout": SECRETS["jwt"]})
    yield record(
        "assistant",
        {
            "id": "msg7",
            "role": "assistant",
            "model": "m",
            "content": [
                {
                    "type": "text",
                    "text": "Fixed the deploy script; it now reads the key from the environment. "
                    f"(screenshot: data:image/png;base64,{SECRETS['image']}AAAA==)",
                }
            ],
        },
    )
    yield record("user", {"role": "user", "content": "Great, thanks alice says hi"})
    yield record(
        "assistant",
        {
            "id": "msg8",
            "role": "assistant",
            "model": "m",
            "content": [{"type": "text", "text": "Glad to help."}],
        },
    )


def _write_corpus(root: Path) -> list[Path]:
    project = root / "claude" / "projects" / "-home-alice-proj"
    project.mkdir(parents=True)
    claude = project / "5f1c2a9e-0000-4000-8000-000000000001.jsonl"
    claude.write_text("".join(json.dumps(line) + "\n" for line in _claude_lines()))
    collector = root / "sessions" / "work" / "interactions.jsonl"
    collector.parent.mkdir(parents=True)
    interactions = [
        {
            "timestamp": "2026-11-20T11:00:00",
            "user": f"How do I use stripe? my key {SECRETS['stripe_key']}",
            "assistant": "Keep it in STRIPE_SECRET_KEY, never in code.",
            "metadata": {"success": True, "token": SECRETS["huggingface_token"]},
        },
        {
            "timestamp": "2026-11-20T11:05:00",
            "user": "Handle the error in upload",
            "assistant": f'Set password = "{SECRETS["db_password"]}" then retry with '
            f"{SECRETS['openai_key']}",
            "metadata": {"success": True, "cwd": "/home/alice/proj"},
        },
    ]
    collector.write_text("".join(json.dumps(i) + "\n" for i in interactions))
    return [claude, collector]


@pytest.fixture
def log_to(tmp_path: Path) -> Iterator[list[logging.Handler]]:
    """Handlers added to the root logger by the test, removed afterwards."""
    handlers: list[logging.Handler] = []
    root = logging.getLogger()
    previous = root.level
    yield handlers
    for handler in handlers:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(previous)


def _log_into(ws: Workspace, handlers: list[logging.Handler]) -> None:
    handler = logging.FileHandler(ws.logs_dir / "pipeline.log")
    handler.setLevel(logging.DEBUG)
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.DEBUG)
    handlers.append(handler)


EXPECTED_KINDS = {
    "openai_key",
    "anthropic_key",
    "github_token",
    "aws_access_key",
    "keyed_secret",
    "slack_token",
    "slack_webhook",
    "stripe_key",
    "jwt",
    "private_key",
    "url_credentials",
    "bearer_token",
    "npm_token",
    "pypi_token",
    "huggingface_token",
    "google_api_key",
    "gitlab_token",
    "sendgrid_key",
    "email",
    "home_path",
    "username",
    "image",
}


def test_no_planted_secret_is_written_anywhere(log_to, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    ws = Workspace(tmp_path / "ws")
    ws.create()
    paths = _write_corpus(tmp_path / "logs")
    config_file = tmp_path / "mlx-rsi.yaml"  # outside: it names the user on purpose
    config_file.write_text("curate:\n  threshold: 0.0\n  usernames: [alice]\n")
    cli.workspace = ws.root
    cli_output = []
    for command in (["ingest", *map(str, paths)], ["curate"], ["dataset", "build"]):
        code, out, err = cli.main("-vv", "--config", str(config_file), *command)
        assert code == 0, err
        cli_output.append(out + err)
    (ws.logs_dir / "cli.log").write_text("".join(cli_output))

    # The same pipeline in-process, every log record into the workspace's logs/.
    _log_into(ws, log_to)
    cfg = Config(curate=CurateConfig(usernames=("alice",), threshold=0.0))
    ingested = ingest(ws, cfg, paths, fmt=None)
    result = curate(ws, cfg)
    dataset = build_dataset(ws, cfg, result.examples, name="v1.2")
    for fmt in ("openai", "mlx", "llamafactory"):
        export_dataset(dataset.path, fmt, ws.root / "exports" / fmt)

    # Every kind was found and counted (a fresh store: ingest everything again).
    fresh = Workspace(tmp_path / "fresh")
    fresh.create()
    counts = ingest(fresh, cfg, paths).redactions
    assert set(counts) >= EXPECTED_KINDS, EXPECTED_KINDS - set(counts)
    assert len(EXPECTED_KINDS) >= 20
    assert ingested.redactions == {}  # nothing new the second time in ws

    # The pipeline produced something to look at.
    assert result.examples and dataset.manifest["redactions"]
    files = [p for root in (ws.root, fresh.root) for p in root.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"state.db", "train.jsonl", "manifest.json", "dataset_info.json"} <= names
    assert (ws.logs_dir / "pipeline.log").stat().st_size > 0
    assert "curate:" in (ws.logs_dir / "cli.log").read_text()

    # The store keeps where each log came from (to re-read it incrementally): the
    # Claude project folder's name embeds the user name. Those paths are not content.
    sources = [str(p.parent).encode() for p in paths]
    leaks = []
    for path in files:
        data = path.read_bytes()
        for source in sources:
            data = data.replace(source, b"")
        leaks += [(kind, str(path)) for kind, secret in SECRETS.items() if _contains(data, secret)]
    assert leaks == []


def _contains(data: bytes, secret: str) -> bool:
    if secret == "alice":  # a user name: as a word (not inside "malice")
        import re

        return re.search(rb"(?<![A-Za-z0-9_])alice(?![A-Za-z0-9_])", data) is not None
    return secret.encode() in data or json.dumps(secret)[1:-1].encode() in data
