"""Failures that used to be tracebacks are one line naming the cause and the fix."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from mlx_rsi.errors import ModelError
from mlx_rsi.modelcheck import check_model_folder, check_safetensors

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "sessions"


def _one_line(err: str) -> None:
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


def _damaged_model(source: Path, tmp_path: Path) -> Path:
    model = tmp_path / "base"
    shutil.copytree(source, model)
    return model


def _workspace(cli, model: Path) -> Path:  # type: ignore[no-untyped-def]
    assert cli("init", "--no-standard-sources", "--base-model", str(model)).exit_code == 0
    shutil.copytree(EXAMPLES, cli.workspace / "sessions", dirs_exist_ok=True)
    return Path(cli.workspace)


def _nothing_ingested(ws: Path) -> bool:
    with sqlite3.connect(ws / "state.db") as conn:
        return conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 0


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _wrong_type(path: Path) -> None:
    config = json.loads(path.read_text())
    config["hidden_size"] = "64"
    path.write_text(json.dumps(config))


def _not_json(path: Path) -> None:
    path.write_text('{"model_type": "llama",\n  "hidden_size": 64,,\n}')


@pytest.mark.parametrize(
    ("damage", "file", "needle"),
    [
        (_empty, "model.safetensors", "model.safetensors is empty"),
        (_truncate, "model.safetensors", "model.safetensors is truncated or damaged"),
        (_wrong_type, "config.json", "hidden_size must be an integer, got '64'"),
        (_not_json, "config.json", "config.json:2: not valid JSON"),
    ],
    ids=["empty-weights", "truncated-weights", "wrong-type", "bad-json"],
)
def test_damaged_base_model_stops_train_before_ingest(  # type: ignore[no-untyped-def]
    cli, tiny_llama_dir, tmp_path, damage, file, needle
) -> None:
    model = _damaged_model(tiny_llama_dir, tmp_path)
    damage(model / file)
    ws = _workspace(cli, model)
    code, _, err = cli.main("train")
    assert code == 1
    _one_line(err)
    assert needle in err
    assert _nothing_ingested(ws)  # validated before ingest starts, not after curation


def test_sound_model_passes_the_checks(tiny_llama_dir: Path) -> None:
    check_model_folder(tiny_llama_dir)


def test_safetensors_header_pointing_past_the_end(tmp_path: Path) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    path = tmp_path / "x.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 8)
    with pytest.raises(ModelError, match="need 16 data bytes, the file holds 8"):
        check_safetensors(path)


def test_empty_config_file_at_the_cli(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("init", "--no-standard-sources").exit_code == 0
    (cli.workspace / "mlx-rsi.yaml").write_text("")
    code, _, err = cli.main("ingest")
    assert code == 2
    _one_line(err)
    assert "the config file is empty" in err


def test_invalid_utf8_folder_name_is_skipped_with_a_reason(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("init", "--no-standard-sources").exit_code == 0
    folder = os.path.join(os.fsencode(tmp_path), b"logs-\xff\xfe")
    os.makedirs(folder)
    source = next(EXAMPLES.glob("*/interactions.jsonl"))
    shutil.copy(source, os.path.join(folder, b"interactions.jsonl"))
    code, out, err = cli.main("ingest", str(tmp_path / os.fsdecode(b"logs-\xff\xfe")))
    assert code == 0, err
    assert "Traceback" not in err and "Traceback" not in out
    assert "path_not_utf8 1" in out
