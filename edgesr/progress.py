"""A small rich progress bar used by every long command (training, calibration, evaluation, tiling)."""

from __future__ import annotations

import contextlib
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


class _Bar:
    def __init__(self, progress: Progress | None, task):
        self._p, self._t = progress, task

    def update(self, advance: int = 1, info: str = "") -> None:
        if self._p is not None:
            self._p.update(self._t, advance=advance, info=info)

    def set_total(self, total: int) -> None:
        if self._p is not None:
            self._p.update(self._t, total=total)

    def log(self, msg: str) -> None:
        if self._p is not None:
            self._p.console.print(msg)
        else:
            print(msg, file=sys.stderr)


@contextlib.contextmanager
def progress_bar(description: str, total: int, completed: int = 0, disable: bool = False):
    if disable:
        yield _Bar(None, None)
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    )
    with Progress(*columns, console=console, transient=False, refresh_per_second=2) as p:
        task = p.add_task(description, total=total, completed=completed, info="", rate="")
        bar = _Bar(p, task)
        orig = bar.update

        def update(advance: int = 1, info: str = "") -> None:
            speed = p.tasks[task].speed
            p.update(task, rate=f"{speed:.2f} it/s" if speed else "")
            orig(advance, info)

        bar.update = update  # type: ignore[method-assign]
        yield bar


def stdout_console() -> Console:
    """Console for result tables; wide when not a terminal so logs keep whole names."""
    import sys as _sys

    return Console(width=None if _sys.stdout.isatty() else 160)
