"""Download progress: a rich bar per file on a terminal, one plain line per file elsewhere.

``huggingface_hub`` drives progress through a tqdm-like class (``tqdm_class=``): it
calls it with ``total``/``initial``/``desc`` and then ``update(n)``. ``bar_class`` makes
such a class for one file, so the hub's own resume offsets show up as they happen.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TransferSpeedColumn,
)

__all__ = ["PullProgress", "human_bytes"]


def human_bytes(count: int | float) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


class PullProgress:
    """Reports downloads on ``console``: bars when it is a terminal, else lines."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress: Progress | None = None

    def say(self, text: str, *, markup: bool = True) -> None:
        self.console.print(text, highlight=False, soft_wrap=True, markup=markup)

    def bar_class(self, label: str) -> type[Any]:
        """A tqdm-like class that reports one file called ``label``."""
        reporter = self

        class _FileBar:
            def __init__(self, *_: Any, total: int | None = None, initial: int = 0, **__: Any):
                self.done = initial
                self.total = total
                self.started = time.monotonic()
                self.closed = False
                self.task = reporter._start(label, total, initial)

            def update(self, n: int | float | None = 1) -> None:
                self.done += int(n or 0)
                if self.task is not None and reporter._progress is not None:
                    reporter._progress.update(self.task, completed=self.done)

            def update_transfer(self, n: int | float | None = 1) -> None:
                pass

            def set_postfix_str(self, *_: Any, **__: Any) -> None:
                pass

            def set_transfer_postfix_str(self, *_: Any, **__: Any) -> None:
                pass

            def refresh(self) -> None:
                pass

            def close(self) -> None:
                if not self.closed:
                    self.closed = True
                    reporter._finish(self.task, label, self.done, time.monotonic() - self.started)

            def __enter__(self) -> _FileBar:
                return self

            def __exit__(
                self,
                kind: type[BaseException] | None,
                error: BaseException | None,
                trace: TracebackType | None,
            ) -> None:
                self.close()

        return _FileBar

    def _start(self, label: str, total: int | None, initial: int) -> TaskID | None:
        if not self.console.is_terminal:
            resumed = f", resuming at {human_bytes(initial)}" if initial else ""
            size = human_bytes(total) if total is not None else "unknown size"
            self.say(f"  fetching {label} ({size}{resumed})", markup=False)
            return None
        if self._progress is None:
            self._progress = Progress(
                TextColumn("  {task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()
        return self._progress.add_task(escape(label), total=total, completed=initial)

    def _finish(self, task: TaskID | None, label: str, done: int, seconds: float) -> None:
        if task is not None and self._progress is not None:
            self._progress.remove_task(task)
        self.say(f"  fetched  {label} ({human_bytes(done)} in {seconds:.1f}s)", markup=False)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
