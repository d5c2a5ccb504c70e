"""Atomic writers: a staged folder never replaces what the caller does not own."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlx_rsi import atomic
from mlx_rsi.errors import TargetExistsError


def _stage(final: Path, text: str, **options: bool) -> None:
    with atomic.staged_dir(final, **options) as folder:
        (folder / "new.txt").write_text(text)


def test_a_folder_with_content_is_never_replaced_unless_owned(tmp_path: Path) -> None:
    final = tmp_path / "out"
    final.mkdir()
    (final / "mine.txt").write_text("user data")
    with pytest.raises(TargetExistsError):
        _stage(final, "x")
    assert [p.name for p in final.iterdir()] == ["mine.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folder left
    _stage(final, "y", replace=True)
    assert [p.name for p in final.iterdir()] == ["new.txt"]


def test_new_or_empty_targets_are_written(tmp_path: Path) -> None:
    _stage(tmp_path / "fresh", "a")
    (tmp_path / "empty").mkdir()
    _stage(tmp_path / "empty", "b")
    assert (tmp_path / "fresh" / "new.txt").read_text() == "a"
    assert (tmp_path / "empty" / "new.txt").read_text() == "b"


def test_a_file_or_link_at_the_target_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("keep")
    (tmp_path / "link").symlink_to(tmp_path / "file")
    for name in ("file", "link"):
        with pytest.raises(TargetExistsError):
            _stage(tmp_path / name, "x")
    assert (tmp_path / "file").read_text() == "keep"


def test_failure_inside_leaves_the_target_as_it_was(tmp_path: Path) -> None:
    final = tmp_path / "out"
    _stage(final, "old")
    with pytest.raises(RuntimeError), atomic.staged_dir(final, replace=True) as folder:
        (folder / "new.txt").write_text("half")
        raise RuntimeError("boom")
    assert (final / "new.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
