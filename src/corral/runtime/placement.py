"""Making room before a load: budgets, eviction, and the admission queue.

Before an expert loads, ``make_room`` asks ``Residency`` for the idle units whose eviction
frees enough of the device's budget (and of ``runtime.max_loaded``), and evicts them. When
the budget is held by experts that are serving or pinned, the load waits (the request
with it) until one goes idle or ``runtime.admission_timeout_s`` runs out, then the
request gets a 503 with Retry-After: a full machine answers "later", never runs out of
memory. Loads and evictions are serialised per device (``lock_for``), so memory measured
around a load belongs to that load and two loads never count the same free bytes, while a
GPU load does not wait behind a CPU one. With ``runtime.max_loaded`` (a count across
devices) one lock serialises them all, so two devices cannot both take the last place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping

from corral.config import Config
from corral.errors import NoCapacity
from corral.observe.metrics import Metrics
from corral.runtime.budget import budget_for, parse_size, weights_bytes
from corral.runtime.handle import ExpertHandle
from corral.runtime.heap import collect_all
from corral.runtime.residency import Residency, Unit

__all__ = ["Placement"]

log = logging.getLogger("corral.runtime")
_RETRY_AFTER_S = 5.0


class Placement:
    """Residency bookkeeping for one runtime: units, budgets, in-flight counts."""

    def __init__(
        self,
        config: Config,
        handles: Mapping[str, ExpertHandle],
        unload: Callable[[ExpertHandle], Awaitable[None]],
        metrics: Callable[[], Metrics | None],
    ) -> None:
        runtime = config.runtime
        self.residency = Residency(runtime.eviction, max_loaded=runtime.max_loaded)
        self.units = _units(handles)
        self._locks: dict[str, asyncio.Lock] = {}  # per device: placement decisions and loads
        self._handles = handles
        self._unload = unload
        self._metrics = metrics
        self._budget_spec = runtime.memory_budget
        self._budgets: dict[str, int | None] = {}
        self._admission_s = runtime.admission_timeout_s
        self._idle = asyncio.Event()

    def lock_for(self, device: str) -> asyncio.Lock:
        """The lock held while placing and loading on ``device``: one per device, or one
        for all when ``max_loaded`` counts models across devices."""
        key = "*" if self.residency.max_loaded is not None else device
        return self._locks.setdefault(key, asyncio.Lock())

    @property
    def limited(self) -> bool:
        return self._budget_spec is not None or self.residency.max_loaded is not None

    def budget(self, device: str) -> int | None:
        if device not in self._budgets:
            self._budgets[device] = budget_for(device, self._budget_spec)
            metrics = self._metrics()
            if metrics is not None and self._budgets[device] is not None:
                metrics.budget_bytes.labels(device).set(self._budgets[device] or 0)
        return self._budgets[device]

    @contextlib.contextmanager
    def serving(self, handle: ExpertHandle) -> Iterator[None]:
        """Marks the expert busy (never evicted) for the block, and counts the use."""
        unit = self.units[handle.name]
        unit.active += 1
        self.residency.touch(unit)
        try:
            yield
        finally:
            unit.active -= 1
            if unit.active == 0:
                self._idle.set()

    def estimate(self, handle: ExpertHandle) -> int:
        """Bytes loading the expert adds: nothing if its weights are already loaded for
        another expert, else the unit's measured size, else ``memory:``, else the size
        of the weights on disk."""
        unit = self.units[handle.name]
        if unit.loaded:
            return 0
        if unit.size is not None:
            return unit.size
        if handle.spec.memory is not None:
            return parse_size(handle.spec.memory)
        return weights_bytes(handle.resolved.path)

    def fits_now(self, handle: ExpertHandle, device: str) -> bool:
        """Whether it loads without evicting anything (pre-warm never evicts)."""
        unit, budget, need = self._request(handle, device)
        return self._victims(unit, need, budget) == []

    async def make_room(self, handle: ExpertHandle, device: str) -> None:
        """Evict what must go for ``handle`` to load on ``device``; wait while the budget
        is held by busy experts. Call with ``lock_for(device)`` held."""
        unit, budget, need = self._request(handle, device)
        if budget is not None and need > budget:
            raise NoCapacity(
                f"expert {handle.name!r} needs about {need / 2**20:.0f} MiB but the {device} "
                f"budget is {budget / 2**20:.0f} MiB: raise runtime.memory_budget",
                retry_after=0,
            )
        loop = asyncio.get_running_loop()
        started = loop.time()
        while (victims := self._victims(unit, need, budget)) is None:
            remaining = started + self._admission_s - loop.time()
            if remaining <= 0:
                raise NoCapacity(
                    f"no room to load expert {handle.name!r} on {device}: the experts holding "
                    "its memory budget are serving or pinned; retry shortly",
                    retry_after=_RETRY_AFTER_S,
                )
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), remaining)
        metrics = self._metrics()
        if metrics is not None and loop.time() > started:
            metrics.admission_wait.observe(loop.time() - started)
        for victim in victims:
            await self.evict(victim)

    async def loaded(
        self, handle: ExpertHandle, device: str, measured: int, *, reported: int | None = None
    ) -> None:
        """After a load whose RSS (or GPU memory) grew by ``measured`` bytes, and whose
        framework ``reported`` what the model holds: what the expert and its unit are
        taken to hold. The framework's figure wins when there is one. Without it, only a
        unit's first cold load in the process is trusted: RSS growth under-counts a reload
        into memory the allocator kept after an eviction (a MiniLM reload measured 2 MiB)
        and over-counts when other experts allocate meanwhile on their own threads (one
        measured 305 MiB for 216). An expert joining loaded weights holds only what its
        own load added. A first load can measure more than estimated; then idle units go
        until the budget holds again."""
        unit = self.units[handle.name]
        if unit.loaded:
            handle.memory_bytes = measured
        else:
            if reported is not None:
                unit.size = reported
            elif unit.size is None:
                unit.size = measured
            unit.bytes = handle.memory_bytes = unit.size
        unit.loaded.add(handle.name)
        unit.reload_seconds = sum(self._handles[n].load_seconds or 0.0 for n in unit.names)
        self.residency.reprioritise(unit)
        budget = self.budget(device)
        victims = self.residency.victims(unit, self._all(), need=0, budget=budget)
        if victims is None:
            log.warning("%s measured more than estimated: over the %s budget", handle.name, device)
        for victim in victims or []:
            await self.evict(victim)

    async def evict(self, unit: Unit) -> None:
        """Unload every loaded member of an idle unit."""
        started = time.perf_counter()
        names = sorted(unit.loaded)
        for name in names:
            await self._unload(self._handles[name])
        unit.loaded.clear()
        unit.bytes = 0
        self.residency.evicted(unit)
        collect_all()  # let the weights' memory go back before the next load is measured
        if unit.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
        seconds = time.perf_counter() - started
        log.info("evicted %s from %s in %.2fs", ", ".join(names), unit.device, seconds)
        metrics = self._metrics()
        if metrics is not None:
            for name in names:
                metrics.observe_eviction(name, unit.device, seconds / len(names))

    def _request(self, handle: ExpertHandle, device: str) -> tuple[Unit, int | None, int]:
        """The expert's unit (placed on ``device``), that device's budget, bytes needed."""
        unit = self.units[handle.name]
        unit.device = unit.device or device
        return unit, self.budget(device), self.estimate(handle)

    def _victims(self, unit: Unit, need: int, budget: int | None) -> list[Unit] | None:
        return self.residency.victims(unit, self._all(), need=need, budget=budget)

    def _all(self) -> list[Unit]:
        return list({id(u): u for u in self.units.values()}.values())


def _units(handles: Mapping[str, ExpertHandle]) -> dict[str, Unit]:
    """Experts on the same weights (same local path) share a unit; others have their own."""
    by_weights: dict[object, Unit] = {}
    units: dict[str, Unit] = {}
    for handle in handles.values():
        path = handle.resolved.path
        key: object = path if path is not None and handle.resolved.base_url is None else handle
        unit = by_weights.setdefault(key, Unit(names=[]))
        unit.names.append(handle.name)
        unit.pinned = unit.pinned or handle.spec.pin
        units[handle.name] = unit
    return units
