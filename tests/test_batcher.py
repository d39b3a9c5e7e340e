"""The micro-batcher coalesces, fans out, and never hangs."""

from __future__ import annotations

import asyncio
import threading

import pytest

from corral.runtime import MicroBatcher


def test_concurrent_submits_share_one_forward() -> None:
    calls: list[list[int]] = []

    def forward(items: list[int]) -> list[int]:
        calls.append(items)
        return [i * 10 for i in items]

    async def run() -> list[list[int]]:
        batcher = MicroBatcher(forward, max_size=64, max_wait_ms=20)
        results = await asyncio.gather(*(batcher.submit([i, i + 100]) for i in range(8)))
        await batcher.close()
        return results

    results = asyncio.run(run())
    assert results == [[i * 10, (i + 100) * 10] for i in range(8)]
    assert len(calls) == 1 and len(calls[0]) == 16


def test_max_size_splits_batches() -> None:
    sizes: list[int] = []

    def forward(items: list[int]) -> list[int]:
        sizes.append(len(items))
        return items

    async def run() -> None:
        batcher = MicroBatcher(forward, max_size=4, max_wait_ms=50)
        await asyncio.gather(*(batcher.submit([i]) for i in range(10)))
        assert batcher.stats.requests == 10 and batcher.stats.items == 10
        await batcher.close()

    asyncio.run(run())
    assert max(sizes) <= 4 and sum(sizes) == 10


def test_max_tokens_bounds_the_padded_batch() -> None:
    """Long texts go a few per pass, short ones many: items x longest stays under the cap."""
    batches: list[list[str]] = []

    def forward(items: list[str]) -> list[int]:
        batches.append(items)
        return [len(i) for i in items]

    async def run() -> list[list[int]]:
        batcher = MicroBatcher(forward, max_size=64, max_wait_ms=50, max_tokens=100)
        texts = ["short"] * 20 + ["x" * 160] * 4  # 3 and 42 estimated tokens
        results = await asyncio.gather(*(batcher.submit([t]) for t in texts))
        await batcher.close()
        return results

    results = asyncio.run(run())
    assert [r[0] for r in results] == [5] * 20 + [160] * 4  # every caller got its own
    assert sum(len(b) for b in batches) == 24
    for batch in batches:
        assert len(batch) * max(len(t) // 4 + 2 for t in batch) <= 100
    assert max(len(b) for b in batches) == 20  # the short ones shared one pass


def test_failure_reaches_every_caller_and_batcher_recovers() -> None:
    fail = threading.Event()
    fail.set()

    def forward(items: list[int]) -> list[int]:
        if fail.is_set():
            raise ValueError("boom")
        return items

    async def run() -> None:
        batcher = MicroBatcher(forward, max_size=8, max_wait_ms=10)
        results = await asyncio.gather(
            *(batcher.submit([i]) for i in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, ValueError) for r in results)
        fail.clear()
        assert await batcher.submit([7]) == [7]
        await batcher.close()

    asyncio.run(run())


def test_one_callers_bad_item_fails_only_that_caller() -> None:
    """11 good callers and 1 bad one in one batch: the batch fails, each caller's items
    run again apart, and only the bad caller gets the error."""
    passes: list[list[int]] = []

    def forward(items: list[int]) -> list[int]:
        passes.append(items)
        if -1 in items:
            raise ValueError("bad item")
        return [i * 2 for i in items]

    async def run() -> list[object]:
        batcher = MicroBatcher(forward, max_size=64, max_wait_ms=30)
        callers = [[i, i + 100] for i in range(11)] + [[5, -1]]
        results = await asyncio.gather(*(batcher.submit(c) for c in callers),
                                       return_exceptions=True)
        await batcher.close()
        return results

    results = asyncio.run(run())
    assert results[:11] == [[i * 2, (i + 100) * 2] for i in range(11)]
    assert isinstance(results[11], ValueError)
    assert len(passes[0]) == 24 and len(passes) == 13  # the shared pass, then one a caller


def test_wrong_output_count_is_an_error_not_a_hang() -> None:
    async def run() -> None:
        batcher = MicroBatcher(lambda items: items[:-1], max_size=8, max_wait_ms=1)
        with pytest.raises(RuntimeError, match="outputs for"):
            await asyncio.wait_for(batcher.submit([1, 2]), timeout=5)
        await batcher.close()

    asyncio.run(run())


def test_cancelled_callers_are_dropped() -> None:
    seen: list[list[int]] = []
    gate = threading.Event()

    def forward(items: list[int]) -> list[int]:
        seen.append(items)
        gate.wait(5)
        return items

    async def run() -> None:
        batcher = MicroBatcher(forward, max_size=1, max_wait_ms=0)
        first = asyncio.ensure_future(batcher.submit([1]))
        await asyncio.sleep(0.05)  # first batch is running
        doomed = asyncio.ensure_future(batcher.submit([2]))
        await asyncio.sleep(0.01)
        doomed.cancel()
        gate.set()
        assert await first == [1]
        assert await batcher.submit([3]) == [3]
        await batcher.close()

    asyncio.run(run())
    assert [2] not in seen
