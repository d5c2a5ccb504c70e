"""A name is never a path: the rule, and `dataset build --name` / `export --out` at the CLI."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from test_dataset import _examples as session_examples

from mlx_rsi.errors import UsageError
from mlx_rsi.names import check_name, name_problem
from mlx_rsi.workspace import Workspace

BAD = [
    "",
    "..",
    ".",
    "../x",
    "../../somewhere",
    "a/b",
    "a\\b",
    "/abs",
    "/",
    "C:x",
    "c:",
    "a\0b",
    ".hidden",
    "-rf",
    "v1..2",
    "trailing.",
    "with space",
    "tab\tname",
    "new\nline",
    "semi;colon",
    "star*",
    "x" * 101,
    "CON",
    "nul.txt",
    "lpt1",
]
GOOD = ["v1.1", "v12.345", "my_dataset", "run-2026-12-01", "_private", "équipe", "a+b@c", "x" * 100]


@pytest.mark.parametrize("name", BAD)
def test_unsafe_names_are_refused_with_one_line(name: str) -> None:
    assert name_problem(name) is not None
    with pytest.raises(UsageError) as caught:
        check_name(name, "dataset name")
    message = caught.value.one_line()
    assert "\n" not in message and message.startswith("dataset name ")
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("name", GOOD)
def test_plain_names_pass(name: str) -> None:
    assert check_name(name, "dataset name") == name


def test_non_strings_are_refused() -> None:
    assert name_problem(None) is not None
    assert name_problem(3) is not None


# --------------------------------------------------------------------------- CLI


def _snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` (the state store aside) with its content hash."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        if path.name.startswith("state.db"):
            continue
        found[relative] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "/"
    return found


@pytest.fixture
def built(cli, tmp_path: Path) -> Workspace:  # type: ignore[no-untyped-def]
    from mlx_rsi.curate import store_examples

    ws = Workspace(cli.workspace)
    ws.create()
    with ws.store() as conn:
        store_examples(conn, session_examples(4, 3))
    code, _, err = cli.main("dataset", "build")
    assert code == 0, err
    (ws.sessions_dir / "mine").mkdir()
    (ws.sessions_dir / "mine" / "interactions.jsonl").write_text('{"user": "u"}\n')
    (tmp_path / "somewhere").mkdir()
    (tmp_path / "somewhere" / "keep.txt").write_text("precious")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("also precious")
    return ws


@pytest.mark.parametrize(
    "name",
    ["../x", "../sessions", "../../somewhere", "..", "../../x", "v1.1", "ABSOLUTE", ".", ""],
)
def test_dataset_build_refuses_unsafe_or_existing_names(cli, built, tmp_path, name) -> None:  # type: ignore[no-untyped-def]
    if name == "ABSOLUTE":
        name = str(tmp_path / "somewhere")
    before = _snapshot(tmp_path)
    code, out, err = cli.main("dataset", "build", "--name", name)
    assert code == 2, (out, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert _snapshot(tmp_path) == before


def test_dataset_build_takes_a_new_plain_name(cli, built) -> None:  # type: ignore[no-untyped-def]
    code, _, err = cli.main("dataset", "build", "--name", "custom_1")
    assert code == 0, err
    assert (built.datasets_dir / "custom_1" / "manifest.json").is_file()


def test_dataset_build_refuses_a_folder_it_did_not_write(cli, built, tmp_path) -> None:  # type: ignore[no-untyped-def]
    stray = built.datasets_dir / "v9.9"
    stray.mkdir()
    (stray / "notes.txt").write_text("user's own file")
    before = _snapshot(tmp_path)
    code, _, err = cli.main("dataset", "build", "--name", "v9.9")
    assert code == 2 and "already exists" in err
    assert _snapshot(tmp_path) == before


def test_export_writes_only_into_an_empty_folder_unless_forced(cli, built, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "somewhere"
    before = _snapshot(tmp_path)
    code, _, err = cli.main("dataset", "export", "v1.1", "--format", "mlx", "--out", str(out))
    assert code == 2 and "--force" in err and err.count("\n") == 1
    assert _snapshot(tmp_path) == before
    code, _, err = cli.main(
        "dataset", "export", "v1.1", "--format", "mlx", "--out", str(out), "--force"
    )
    assert code == 0, err
    assert (out / "keep.txt").read_text() == "precious"
    assert (out / "train.jsonl").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main("dataset", "export", "v1.1", "--format", "openai", "--out", str(empty))[0] == 0
