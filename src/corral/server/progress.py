"""Model-loading progress on the terminal (rich), one line per expert with its time and size."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from corral.runtime import ExpertHandle, ExpertState


class RichLoadProgress:
    """A LoadListener: a spinner while each expert loads, then its load time and memory."""

    def __init__(self, console: Console, total: int | None = None) -> None:
        self.console = console
        self.total = total
        self._progress: Progress | None = None
        self._task_id: TaskID | None = None
        self._done = 0

    def load_started(self, handle: ExpertHandle) -> None:
        if self._progress is None:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()
            self._task_id = self._progress.add_task("loading experts", total=self.total)
        assert self._task_id is not None
        self._progress.update(
            self._task_id, description=f"loading [bold]{handle.name}[/] ({handle.spec.model})"
        )

    def load_finished(self, handle: ExpertHandle) -> None:
        assert self._progress is not None and self._task_id is not None
        self._done += 1
        self._progress.update(self._task_id, completed=self._done)
        if handle.state == ExpertState.READY and not handle.upstream_error:
            mib = (handle.memory_bytes or 0) / 2**20
            seconds = handle.load_seconds or 0.0
            self._progress.console.print(
                f"[green]ready[/] {handle.name:<16} {seconds:5.1f}s  {mib:7.1f} MiB",
                highlight=False,
            )
        else:
            why = handle.status()[1]
            self._progress.console.print(f"[red]unavailable[/] {why}", highlight=False)
        if self.total is not None and self._done >= self.total:
            self._progress.stop()
