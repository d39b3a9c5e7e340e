"""Dynamic micro-batching: concurrent requests to one expert share one forward pass.

The loop waits for the first request, keeps collecting until ``max_size`` items or
``max_wait_ms`` have gone by, runs ``forward`` once in a worker thread, then hands
every caller its own slice. While a batch runs, the next one fills up, so under load
batches grow by themselves and at low load a lone request waits at most
``max_wait_ms``. With ``max_tokens`` a batch also stops before its padded size (items x
longest item, in tokens: what an encoder really computes) would pass it, so a GPU gets
many short texts or few long ones per pass instead of a fixed count. It never hangs:
cancelled callers are dropped before the run, a batch whose callers have all gone stops
at the expert's next ``checkpoint()`` (see ``cancel``), and a wrong output count is an
error. A failing batch of several callers is run again caller by caller, so one
caller's bad item fails only that caller; the others get their answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from corral.runtime.cancel import Cancelled, Progress, cancellable, current_progress

__all__ = ["BatchStats", "MicroBatcher"]

ItemT = TypeVar("ItemT")
OutT = TypeVar("OutT")


@dataclass
class BatchStats:
    requests: int = 0
    batches: int = 0
    items: int = 0
    busy_seconds: float = 0.0


@dataclass
class _Pending(Generic[ItemT, OutT]):
    items: list[ItemT]
    future: asyncio.Future[tuple[list[OutT], float]]  # outputs, share of compute seconds
    enqueued: float
    progress: Progress | None = None  # told when the items reach the worker


class MicroBatcher(Generic[ItemT, OutT]):
    """Coalesces ``submit`` calls into batched ``forward`` calls, one batch at a time."""

    def __init__(
        self,
        forward: Callable[[list[ItemT]], list[OutT]],
        *,
        max_size: int,
        max_wait_ms: float,
        executor: Executor | None = None,
        on_batch: Callable[[int, list[float]], None] | None = None,
        on_cancel: Callable[[], None] | None = None,
        max_tokens: int | None = None,
        tokens: Callable[[ItemT], int] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._forward = forward
        self._max_size = max_size
        self._max_wait = max_wait_ms / 1000.0
        self._clock = clock
        self._queue: asyncio.Queue[_Pending[ItemT, OutT]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._executor = executor  # where ``forward`` runs; None: asyncio's default pool
        self._on_batch = on_batch  # told (items, each caller's queue wait) per forward pass
        self._on_cancel = on_cancel  # told when a batch stopped because its callers left
        self._max_tokens = max_tokens
        self._tokens = tokens or _estimate_tokens
        self._held: _Pending[ItemT, OutT] | None = None  # did not fit the last batch
        self.stats = BatchStats()

    async def submit(self, items: list[ItemT]) -> list[OutT]:
        """Queue ``items`` and wait for their outputs, in the same order."""
        outputs, _ = await self.submit_measured(items)
        return outputs

    async def submit_measured(self, items: list[ItemT]) -> tuple[list[OutT], float]:
        """Like ``submit``, also giving this caller's share of the forward pass's
        seconds (in proportion to its items), which is what its compute cost is."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[list[OutT], float]] = loop.create_future()
        progress = current_progress()
        if progress is not None:
            progress.started = False  # queued
        await self._queue.put(_Pending(list(items), future, self._clock(), progress))
        return await future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        waiting = [self._held] if self._held is not None else []
        self._held = None
        while not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        for pending in waiting:
            if not pending.future.done():
                pending.future.set_exception(RuntimeError("expert was unloaded"))

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            batch = [p for p in batch if not p.future.done()]  # drop cancelled callers
            if batch:
                await self._execute(batch)

    async def _collect(self) -> list[_Pending[ItemT, OutT]]:
        first, self._held = self._held or await self._queue.get(), None
        batch, size = [first], len(first.items)
        longest = self._longest(first)
        deadline = self._clock() + self._max_wait
        while size < self._max_size:
            try:
                pending = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    break
                try:
                    pending = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            widest = max(longest, self._longest(pending))
            if self._max_tokens is not None and (size + len(pending.items)) * widest > (
                self._max_tokens
            ):
                self._held = pending  # first in the next batch
                break
            batch.append(pending)
            size += len(pending.items)
            longest = widest
        return batch

    def _longest(self, pending: _Pending[ItemT, OutT]) -> int:
        if self._max_tokens is None:
            return 0
        return max((self._tokens(item) for item in pending.items), default=0)

    async def _execute(self, batch: list[_Pending[ItemT, OutT]]) -> None:
        flat: list[Any] = [item for pending in batch for item in pending.items]
        started = self._clock()
        if self._on_batch is not None:
            self._on_batch(len(flat), [started - pending.enqueued for pending in batch])
        for pending in batch:
            if pending.progress is not None:
                pending.progress.started = True
        try:
            outputs, busy = await self._forward_timed(batch, flat)
        except Cancelled:  # nobody is waiting: nothing to hand out
            if self._on_cancel is not None:
                self._on_cancel()
            return
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch, exc)
            else:  # one caller's bad item must not fail the others: each on its own
                await self._execute_apart(batch)
            return
        except BaseException as exc:  # every waiting caller learns of the failure
            _fail(batch, exc)
            raise
        self._hand_out(batch, flat, outputs, busy)

    async def _execute_apart(self, batch: list[_Pending[ItemT, OutT]]) -> None:
        """After a failed batch, each caller's items as a batch of their own: only the
        caller whose items fail again gets the error."""
        for pending in batch:
            if pending.future.done():
                continue
            try:
                outputs, busy = await self._forward_timed([pending], list(pending.items))
            except Cancelled:
                continue
            except Exception as exc:
                _fail([pending], exc)
                continue
            self._hand_out([pending], list(pending.items), outputs, busy)

    async def _forward_timed(
        self, batch: list[_Pending[ItemT, OutT]], flat: list[Any]
    ) -> tuple[list[OutT], float]:
        """``forward(flat)`` in the worker (stopping when every caller has gone), and its
        seconds; a wrong output count is an error."""

        def run() -> list[OutT]:
            with cancellable(lambda: all(pending.future.done() for pending in batch)):
                return self._forward(flat)

        started = self._clock()
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(self._executor, run)
        finally:
            busy = self._clock() - started
            self.stats.busy_seconds += busy
        if len(outputs) != len(flat):
            raise RuntimeError(f"forward returned {len(outputs)} outputs for {len(flat)} items")
        return outputs, busy

    def _hand_out(
        self,
        batch: list[_Pending[ItemT, OutT]],
        flat: list[Any],
        outputs: list[OutT],
        busy: float,
    ) -> None:
        self.stats.batches += 1
        self.stats.requests += len(batch)
        self.stats.items += len(flat)
        offset = 0
        for pending in batch:
            n = len(pending.items)
            if not pending.future.done():
                share = busy * n / len(flat) if flat else 0.0
                pending.future.set_result((outputs[offset : offset + n], share))
            offset += n


def _fail(batch: list[_Pending[Any, Any]], exc: BaseException) -> None:
    for pending in batch:
        if not pending.future.done():
            pending.future.set_exception(exc)


def _estimate_tokens(item: object) -> int:
    """About 4 characters per token for text; a pair (query, passage) is both parts."""
    if isinstance(item, str):
        return len(item) // 4 + 2
    if isinstance(item, tuple | list):
        return sum(_estimate_tokens(part) for part in item)
    return 1
