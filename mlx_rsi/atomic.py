"""Atomic writes: a reader sees the old content or the new one, never a half.

Files are written to a temporary sibling, fsynced and renamed over the target;
folders are filled under a temporary sibling name and renamed into place last.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlx_rsi.errors import TargetExistsError


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


@contextmanager
def staged_dir(final: Path, *, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``final``; on success it is renamed to ``final``.

    An existing ``final`` is replaced only when the caller owns it and says so with
    ``replace=True`` (a checkpoint it wrote, a model folder of its own run); an
    empty folder is taken as free. Otherwise :class:`TargetExistsError` is raised
    before anything is written, so a writer never deletes a folder it did not create.
    On any exception (Ctrl-C included) the temporary folder is removed and
    ``final`` is left as it was.
    """
    if not replace and occupied(final):
        raise TargetExistsError(
            f"{final} already exists", hint="choose another name or remove it first"
        )
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".{final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def occupied(path: Path) -> bool:
    """True when ``path`` is a file, a link, or a folder with anything in it."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        return True
    if not path.is_dir():
        return False
    with os.scandir(path) as entries:
        return any(True for _ in entries)
