"""Dataset versions: split by session, carried test set, manifest, determinism, exports."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mlx_rsi.collector import WorkSessionCollector
from mlx_rsi.config import Config, CurateConfig
from mlx_rsi.curate import curate
from mlx_rsi.dataset import (
    build_dataset,
    export_dataset,
    find_dataset,
    read_split,
    split_examples,
    to_sharegpt,
)
from mlx_rsi.errors import DatasetError
from mlx_rsi.ingest import ingest
from mlx_rsi.records import Example
from mlx_rsi.registry import next_version_name
from mlx_rsi.synth import identity_examples
from mlx_rsi.workspace import Workspace

SPLITS = ("train", "valid", "test")


def _examples(sessions: int, per_session: int) -> list[Example]:
    return [
        Example(
            messages=[
                {"role": "user", "content": f"request {s}-{i} about topic {s * 100 + i}"},
                {"role": "assistant", "content": f"answer {s}-{i}"},
            ],
            session_id=f"session-{s:02d}",
            score=1.0,
        )
        for s in range(sessions)
        for i in range(per_session)
    ]


def _sessions_of(split_examples_: list[Example]) -> set[str]:
    return {e.session_id for e in split_examples_}


@pytest.mark.parametrize("sessions", [3, 4, 10, 25])
def test_split_is_by_session_and_every_split_is_used(sessions: int) -> None:
    split = split_examples(
        _examples(sessions, 3) + identity_examples(Config().synth.identity), Config()
    )
    assert split.mode == "by_session"
    train, valid, test = (_sessions_of(getattr(split, s)) for s in SPLITS)
    assert not (train & valid) and not (train & test) and not (valid & test)
    assert train and valid and test
    assert "identity" in train  # identity examples always train
    assert len(valid) == max(1, round(sessions * 0.1))


def test_two_sessions_give_train_and_valid_only() -> None:
    split = split_examples(_examples(2, 3), Config())
    assert (len(split.train), len(split.valid), len(split.test)) == (3, 3, 0)
    assert not _sessions_of(split.train) & _sessions_of(split.valid)


def test_one_session_is_split_by_example_and_one_example_is_both() -> None:
    split = split_examples(_examples(1, 10), Config())
    assert split.mode == "by_example"
    assert (len(split.train), len(split.valid)) == (9, 1)
    single = split_examples(_examples(1, 1), Config())
    assert single.mode == "single_example"
    assert single.train == single.valid and len(single.train) == 1
    with pytest.raises(DatasetError, match="no examples to build a dataset from"):
        split_examples([], Config())


def test_synthetic_examples_of_held_out_sessions_are_left_out() -> None:
    examples = _examples(10, 1)
    variations = []
    for example in examples:
        variation = Example(
            messages=[{"role": "user", "content": "v"}, example.messages[1]],
            session_id=example.session_id,
            origin="variation",
        )
        variations.append(variation)
    split = split_examples(examples + variations, Config())
    assert all(e.origin == "session" for e in split.valid + split.test)
    assert split.left_out == len(split.valid) + len(split.test)


def _write_sessions(root: Path, first: int, count: int) -> None:
    for s in range(first, first + count):
        collector = WorkSessionCollector(f"work_{s:02d}", root=root)
        for i in range(3):
            collector.record(
                f"Task {s}.{i}: rename module m{s}{i} to n{s}{i}",
                f"Renamed m{s}{i} to n{s}{i} and updated {i + 2} imports in package p{s}.",
                {"success": True},
            )


def _cycle(ws: Workspace, cfg: Config) -> Path:
    ingest(ws, cfg, [ws.sessions_dir])
    examples = curate(ws, cfg).examples
    conn = ws.store()
    name = next_version_name(conn)
    conn.close()
    return build_dataset(ws, cfg, examples, name=name).path


def test_test_set_is_carried_forward_and_never_leaks(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    ws.create()
    cfg = Config()
    _write_sessions(ws.sessions_dir, 0, 10)
    first = _cycle(ws, cfg)
    _write_sessions(ws.sessions_dir, 10, 10)
    second = _cycle(ws, cfg)
    assert (first.name, second.name) == ("v1.1", "v1.2")
    assert (first / "test.jsonl").read_bytes() == (second / "test.jsonl").read_bytes()
    manifest = json.loads((second / "manifest.json").read_text())
    assert manifest["parent"] == "v1.1" and manifest["split"]["test_from"] == "v1.1"
    sessions = manifest["sessions"]
    parent_manifest = json.loads((first / "manifest.json").read_text())
    assert sessions["test"] == parent_manifest["sessions"]["test"]
    assert manifest["categories"]["test"] == parent_manifest["categories"]["test"]
    assert manifest["counts"]["test"] == parent_manifest["counts"]["test"] > 0
    for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
        assert not set(sessions[a]) & set(sessions[b])
    test_requests = {r["messages"][0]["content"] for r in read_split(second / "test.jsonl")}
    others = read_split(second / "train.jsonl") + read_split(second / "valid.jsonl")
    assert not any(r["messages"][-2]["content"] in test_requests for r in others)


def test_manifest_describes_the_files(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    ws.create()
    _write_sessions(ws.sessions_dir, 0, 5)
    path = _cycle(ws, Config())
    manifest = json.loads((path / "manifest.json").read_text())
    for split in SPLITS:
        data = (path / f"{split}.jsonl").read_bytes()
        entry = manifest["files"][f"{split}.jsonl"]
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["examples"] == manifest["counts"][split] == len(data.splitlines())
    assert manifest["sources"]["collector"] > 0 and manifest["sources"]["identity"] == 6
    assert manifest["score_buckets"] == {"0.9-1.0": sum(manifest["counts"].values())}
    assert set(manifest["origins"]["train"]) == {"session", "variation", "identity", "replay"}
    assert len(manifest["config_hash"]) == 16
    conn = ws.store()
    row = conn.execute("SELECT path, manifest FROM datasets WHERE name = 'v1.1'").fetchone()
    conn.close()
    assert Path(row[0]) == path and json.loads(row[1]) == manifest
    record = json.loads((path / "train.jsonl").read_text().splitlines()[0])
    assert set(record) == {"messages"}
    assert {m["role"] for m in record["messages"]} <= {"user", "assistant", "tool", "system"}


def test_same_inputs_and_config_give_byte_identical_files(tmp_path: Path) -> None:
    """Rebuilt from scratch at the same place (session ids hash the log paths)."""
    import shutil

    files = ("train.jsonl", "valid.jsonl", "test.jsonl", "manifest.json")
    runs = []
    for seed in (0, 0, 7):
        shutil.rmtree(tmp_path / "ws", ignore_errors=True)
        ws = Workspace(tmp_path / "ws")
        ws.create()
        _write_sessions(ws.sessions_dir, 0, 6)
        path = _cycle(ws, Config(curate=CurateConfig(seed=seed)))
        runs.append({f: (path / f).read_bytes() for f in files})
    assert runs[0] == runs[1]
    assert runs[2]["manifest.json"] != runs[0]["manifest.json"]  # the seed matters


def test_the_split_does_not_depend_on_where_the_logs_live(tmp_path: Path) -> None:
    """Two clones of the same logs at different paths hold out the same sessions."""
    files = ("train.jsonl", "valid.jsonl", "test.jsonl")
    runs = []
    for place in ("here", "somewhere/else/entirely"):
        ws = Workspace(tmp_path / place / "ws")
        ws.create()
        _write_sessions(ws.sessions_dir, 0, 8)
        path = _cycle(ws, Config())
        runs.append({f: (path / f).read_bytes() for f in files})
    assert runs[0] == runs[1] and runs[0]["test.jsonl"]


def test_find_dataset(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    ws.create()
    _write_sessions(ws.sessions_dir, 0, 3)
    path = _cycle(ws, Config())
    assert find_dataset(ws, "v1.1") == path
    assert find_dataset(ws, str(path)) == path.resolve()
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "train.jsonl").write_text("{}\n")
    assert find_dataset(ws, loose) == loose.resolve()
    with pytest.raises(DatasetError, match=r"no dataset 'v9\.9'") as info:
        find_dataset(ws, "v9.9")
    assert "v1.1" in (info.value.hint or "")
    (path / "manifest.json").unlink()  # an incomplete dataset is not found by name
    with pytest.raises(DatasetError):
        find_dataset(ws, "v1.1")


TOOL_RECORD = {
    "messages": [
        {"role": "user", "content": "list the files"},
        {"role": "assistant", "content": "old", "weight": 0},
        {"role": "user", "content": "again, with sizes"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "Bash", "arguments": {"cmd": "ls -l"}},
                }
            ],
        },
        {"role": "tool", "content": "a.txt 3", "tool_call_id": "c1"},
        {"role": "assistant", "content": "One file: a.txt (3 bytes)."},
    ]
}


def _dataset_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "ds"
    folder.mkdir()
    plain = {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    }
    (folder / "train.jsonl").write_text(json.dumps(TOOL_RECORD) + "\n" + json.dumps(plain) + "\n")
    (folder / "valid.jsonl").write_text(json.dumps(plain) + "\n")
    (folder / "test.jsonl").write_text("")
    return folder


def test_export_openai_and_mlx(tmp_path: Path) -> None:
    source = _dataset_dir(tmp_path)
    export_dataset(source, "openai", tmp_path / "oa")
    record = json.loads((tmp_path / "oa" / "train.jsonl").read_text().splitlines()[0])
    call = record["messages"][3]["tool_calls"][0]["function"]
    assert call == {"name": "Bash", "arguments": '{"cmd":"ls -l"}'}  # OpenAI wants a string
    assert record["messages"][1]["weight"] == 0
    export_dataset(source, "mlx", tmp_path / "mlx")
    record = json.loads((tmp_path / "mlx" / "train.jsonl").read_text().splitlines()[0])
    assert "weight" not in record["messages"][1]
    assert record["messages"][3]["tool_calls"][0]["function"]["arguments"] == {"cmd": "ls -l"}
    assert (tmp_path / "mlx" / "valid.jsonl").read_text().count("\n") == 1
    with pytest.raises(DatasetError, match="unknown export format 'csv'"):
        export_dataset(source, "csv", tmp_path / "x")


def test_export_llamafactory(tmp_path: Path) -> None:
    written = export_dataset(_dataset_dir(tmp_path), "llamafactory", tmp_path / "lf", name="v1_1")
    info = json.loads((tmp_path / "lf" / "dataset_info.json").read_text())
    assert set(info) == {"v1_1_train", "v1_1_train_alpaca", "v1_1_valid", "v1_1_valid_alpaca"}
    assert info["v1_1_train"]["formatting"] == "sharegpt"
    assert info["v1_1_train_alpaca"] == {
        "file_name": "v1_1_train_alpaca.json",
        "formatting": "alpaca",
    }
    assert all(p.exists() for p in written)
    sharegpt = json.loads((tmp_path / "lf" / "v1_1_train.json").read_text())[0]["conversations"]
    assert [t["from"] for t in sharegpt] == [
        "human",
        "gpt",
        "human",
        "function_call",
        "observation",
        "gpt",
    ]
    assert json.loads(sharegpt[3]["value"]) == {"name": "Bash", "arguments": {"cmd": "ls -l"}}
    alpaca = json.loads((tmp_path / "lf" / "v1_1_train_alpaca.json").read_text())
    assert alpaca == [{"instruction": "hi", "input": "", "output": "hello"}]  # tool record skipped


def test_sharegpt_merges_consecutive_roles() -> None:
    record = {
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a1"},
            {"role": "assistant", "content": "a2"},
        ]
    }
    assert to_sharegpt(record) == {
        "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a1\n\na2"}],
        "system": "be brief",
    }


def test_dataset_cli(cli, workspace_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ws = Workspace(workspace_dir)
    ws.create()
    _write_sessions(ws.sessions_dir, 0, 4)
    assert cli.main("ingest")[0] == 0
    code, out, _ = cli.main("curate", "--dry-run")
    assert code == 0 and out.startswith("curate (dry run): 12 interactions in 4 sessions")
    code, _, err = cli.main("dataset", "build")
    assert code == 1 and err.startswith("error: no curated examples stored")
    assert cli.main("curate")[0] == 0
    code, out, _ = cli.main("dataset", "build")
    assert code == 0 and out.startswith("dataset v1.1:")
    code, out, _ = cli.main("dataset", "list")
    assert code == 0 and "v1.1" in out
    code, out, _ = cli.main("dataset", "show", "v1.1")
    assert code == 0 and "config hash" in out
    code, out, _ = cli.main(
        "dataset", "export", "v1.1", "--format", "mlx", "--out", str(tmp_path / "e")
    )
    assert code == 0 and (tmp_path / "e" / "train.jsonl").exists()
    code, _, err = cli.main("dataset", "show", "v7.7")
    assert code == 1 and err.startswith("error: no dataset 'v7.7'") and err.count("\n") == 1
    for command in (["curate"], ["dataset"], ["dataset", "export"]):
        assert cli(*command, "--help").exit_code == 0
