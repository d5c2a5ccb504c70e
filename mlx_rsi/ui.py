"""Everything the user sees: summaries, tables and progress bars (rich).

Core code never prints; commands call these. ``quiet`` silences all but errors,
and progress bars only animate on a terminal (CI and the daemon get plain lines).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table


class UI:
    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.out = Console(highlight=False, soft_wrap=True)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)

    def line(self, text: str) -> None:
        """A one-line summary on stdout (suppressed by --quiet)."""
        if not self.quiet:
            self.out.print(text, markup=False)

    def info(self, text: str) -> None:
        """A notice on stderr (suppressed by --quiet)."""
        if not self.quiet:
            self.err.print(text, markup=False)

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if self.quiet:
            return
        table = Table(title=title, title_justify="left")
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*[str(cell) for cell in row])
        self.out.print(table)

    @contextmanager
    def progress(self, description: str, total: int | None) -> Iterator[ProgressTask]:
        """A progress bar on a terminal; plain periodic lines elsewhere."""
        live = not self.quiet and self.err.is_terminal
        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.err,
            disable=not live,
            transient=False,
        )
        with progress:
            task_id = progress.add_task(description, total=total, status="")
            yield ProgressTask(progress, task_id, self, live)


class ProgressTask:
    def __init__(self, progress: Progress, task_id: Any, ui: UI, live: bool) -> None:
        self._progress = progress
        self._task_id = task_id
        self._ui = ui
        self._live = live

    def finish(self) -> None:
        """Stop redrawing (later stages print below a finished bar)."""
        self._progress.stop()

    def update(self, completed: int, status: str = "", total: int | None = None) -> None:
        self._progress.update(self._task_id, completed=completed, status=status, total=total)
        if not self._live and status:
            self._ui.info(f"  {completed}/{total or '?'} {status}")


def stdin_is_tty() -> bool:
    return sys.stdin.isatty()
