"""`mlx-rsi publish` against a loopback server speaking the Hub endpoints (tests/hub_server.py).

Files, the version tag and the card metadata arrive; --dry-run lists exactly what a
real run sends; a 500 or a dropped connection mid-upload is one line with retry
advice; a version whose gate failed is refused unless --force; the token appears
in no output or log.
"""

from __future__ import annotations

import logging
import shutil

import pytest
import yaml
from hub_server import HubServer

from mlx_rsi import registry
from mlx_rsi.workspace import Workspace

TOKEN = "hf_testSECRETtoken1234567890abcdef"


@pytest.fixture
def hub(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the tests' offline guard
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with HubServer() as server:
        yield server


@pytest.fixture
def hub_cached_base(tmp_path, tiny_llama_dir, monkeypatch):
    """The tiny model as the Hub repo ``acme/tiny-llama`` in a local Hugging Face cache."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    repo = cache / "models--acme--tiny-llama"
    commit = "0" * 40
    shutil.copytree(tiny_llama_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit / "README.md").write_text("---\nlicense: apache-2.0\n---\n")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return "acme/tiny-llama"


@pytest.fixture
def exported(cli, hub_cached_base):
    """A workspace whose current version v1.1 is exported as hf (real export)."""
    from mlx_rsi.config import load_config
    from mlx_rsi.export import export_version
    from mlx_rsi.modelpath import resolve_base_model

    tiny_llama_dir = resolve_base_model(hub_cached_base)
    assert cli("init", "--no-standard-sources").exit_code == 0
    ws = Workspace(cli.workspace)
    shutil.copytree(tiny_llama_dir, ws.models_dir / "v1.1" / "hf")
    conn = ws.store()
    registry.record_version(
        conn, registry.Version("v1.1", "candidate", "v1.0", eval={"promote": True})
    )
    registry.promote(conn, "v1.1")
    conn.close()
    config = ws.config_path
    config.write_text(f"model:\n  base: {hub_cached_base}\n")
    export_version(ws, load_config(config), "v1.1", ["hf"])
    return ws


def publish(cli, hub, *args):
    return cli.main(
        "publish", *args, "-c", str(cli.workspace / "mlx-rsi.yaml"), "--repo", "me/tiny"
    )


def with_endpoint(ws, hub, extra: str = "") -> None:
    text = ws.config_path.read_text()
    ws.config_path.write_text(f"{text}publish:\n  endpoint: {hub.url}\n{extra}")


def test_publish_uploads_files_tag_and_card_metadata(cli, hub, exported, caplog):
    with_endpoint(exported, hub)
    caplog.set_level(logging.DEBUG)
    code, out, err = publish(cli, hub)
    assert code == 0, err
    files = hub.state.files["me/tiny"]
    assert {"README.md", "hf/README.md", "hf/config.json", "hf/model.safetensors"} <= set(files)
    local = exported.models_dir / "v1.1" / "hf" / "model.safetensors"
    assert files["hf/model.safetensors"] == local.read_bytes()
    assert hub.state.tags["me/tiny"] == ["v1.1"]
    assert hub.state.repos["me/tiny"]["private"] is True
    header = files["README.md"].decode().split("---")[1]
    meta = yaml.safe_load(header)
    assert meta["base_model"] == "acme/tiny-llama" and meta["license"] == "apache-2.0"
    assert "mlx-rsi" in meta["tags"] and "lora" in meta["tags"]
    assert all(a == f"Bearer {TOKEN}" for a in hub.state.auth)
    assert len(hub.state.commits) == 1  # every file in one commit
    assert TOKEN not in out + err + caplog.text


def test_dry_run_lists_exactly_what_is_uploaded(cli, hub, exported):
    with_endpoint(exported, hub)
    code, out, err = publish(cli, hub, "--dry-run", "--json")
    assert code == 0, err
    assert not hub.state.requests  # nothing sent
    import json

    listed = {f["path"]: f["bytes"] for f in json.loads(out)["uploads"][0]["files"]}
    code, _, err = publish(cli, hub)
    assert code == 0, err
    sent = {path: len(data) for path, data in hub.state.files["me/tiny"].items()}
    assert listed == sent


@pytest.mark.parametrize("failure", ["500", "drop"])
def test_failed_upload_is_one_line_with_retry_advice(
    cli, hub, exported, failure, caplog, monkeypatch
):
    import huggingface_hub.utils._http as hub_http

    with_endpoint(exported, hub)
    hub.state.fail_commit = failure
    monkeypatch.setattr(hub_http.time, "sleep", lambda _s: None)  # its retries, without waits
    caplog.set_level(logging.DEBUG)
    code, out, err = publish(cli, hub)
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "upload to" in lines[0] and "again to retry" in lines[0]
    if failure == "500":
        assert "500" in lines[0]
    assert "Traceback" not in err
    assert "me/tiny" not in hub.state.tags and "me/tiny" not in hub.state.files
    assert TOKEN not in out + err + caplog.text


def test_gate_failed_version_is_refused_unless_forced(cli, hub, exported):
    with_endpoint(exported, hub)
    conn = exported.store()
    version = registry.get_version(conn, "v1.1")
    assert version is not None
    version.status, version.eval = "rejected", {"promote": False}
    registry.record_version(conn, version)
    conn.close()
    code, _, err = publish(cli, hub)
    assert code == 2 and "did not pass its evaluation gate" in err and "--force" in err
    assert not hub.state.requests
    code, _, err = publish(cli, hub, "--force")
    assert code == 0, err


def test_repo_per_format_layout_and_missing_token(cli, hub, exported, monkeypatch, tmp_path):
    with_endpoint(exported, hub, "  layout: repo-per-format\n")
    code, _, err = publish(cli, hub)
    assert code == 0, err
    assert "config.json" in hub.state.files["me/tiny-hf"]
    monkeypatch.delenv("HF_TOKEN")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    code, _, err = publish(cli, hub)
    assert code == 1 and "no Hugging Face token" in err and "HF_TOKEN" in err


def test_publish_refuses_formats_not_exported(cli, hub, exported):
    with_endpoint(exported, hub)
    code, _, err = publish(cli, hub, "--formats", "gguf-q8_0")
    assert code == 2 and "not exported yet: gguf-q8_0" in err
    code, _, err = cli.main("publish", "--repo", "not a repo", "--dry-run")
    assert code == 2 and "is not a Hub repo id" in err
