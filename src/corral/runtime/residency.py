"""Which experts stay loaded: the eviction policy, apart from the loading machinery.

The unit of residency is a ``Unit``: the experts that share one copy of weights (the
default config serves embed, rerank and classify from one MiniLM), since memory comes back
only when all of them are unloaded. Experts on weights of their own are units of one.

The ``cost`` policy is GreedyDual-Size-Frequency (Cherkasova, 1998): a unit's priority is
``L + uses x reload_seconds / bytes``, the value of keeping it per byte it holds, where
``L`` rises to the priority of each unit evicted so that units not used for a while age
out. It evicts the lowest priority first, so a model that is slow to load or often used
stays over a cheap, rarely used one of the same size. ``lru`` evicts the least recently
used, for comparison with count-based hosts (a fixed number of loaded models).
Neither evicts a unit that is serving a request or pinned.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Residency", "Unit"]

_MIN_BYTES = 2**20  # so a unit that measured ~0 bytes does not get infinite priority
_MIN_RELOAD = 1e-3


@dataclass(eq=False)
class Unit:
    """Experts sharing one copy of weights, and what residency knows about them."""

    names: list[str]
    device: str = ""
    pinned: bool = False
    loaded: set[str] = field(default_factory=set)  # members loaded now
    bytes: int = 0  # held now: ``size`` while any member is loaded, else 0
    size: int | None = None  # the weights' memory, measured at the first cold load
    reload_seconds: float = 0.0  # measured: what evicting it costs the next request
    uses: int = 0
    last_used: float = 0.0
    priority: float = 0.0
    active: int = 0  # requests being served by its members now

    @property
    def evictable(self) -> bool:
        return bool(self.loaded) and self.active == 0 and not self.pinned


class Residency:
    """Ranks units for eviction and picks the fewest that make room."""

    def __init__(
        self,
        policy: Literal["cost", "lru"] = "cost",
        *,
        max_loaded: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.max_loaded = max_loaded
        self._clock = clock
        self._inflation: defaultdict[str, float] = defaultdict(float)  # GDSF's L, per device

    def touch(self, unit: Unit) -> None:
        """A request for one of the unit's experts."""
        unit.uses += 1
        unit.last_used = self._clock()
        self.reprioritise(unit)

    def reprioritise(self, unit: Unit) -> None:
        value = unit.uses * max(unit.reload_seconds, _MIN_RELOAD) / max(unit.bytes, _MIN_BYTES)
        unit.priority = self._inflation[unit.device] + value

    def evicted(self, unit: Unit) -> None:
        self._inflation[unit.device] = max(self._inflation[unit.device], unit.priority)

    def victims(
        self,
        target: Unit,
        units: Iterable[Unit],
        *,
        need: int,
        budget: int | None,
    ) -> list[Unit] | None:
        """Units to evict so ``target`` can take ``need`` more bytes on its device and be
        loaded within ``max_loaded`` models (a unit is one: one set of weights); None
        when no choice of idle units makes room."""
        others = [u for u in units if u is not target]
        same_device = [u for u in others if u.device == target.device]
        used = target.bytes + sum(u.bytes for u in same_device if u.loaded)
        over_bytes = used + need - budget if budget is not None else 0
        loaded = 1 + sum(1 for u in others if u.loaded)  # the target's, once it is loaded
        over_count = loaded - self.max_loaded if self.max_loaded is not None else 0
        chosen: list[Unit] = []
        for unit in sorted((u for u in others if u.evictable), key=self._rank):
            if over_bytes <= 0 and over_count <= 0:
                break
            frees = unit.bytes if unit.device == target.device else 0
            if (over_bytes > 0 and frees > 0) or over_count > 0:
                chosen.append(unit)
                over_bytes -= frees
                over_count -= 1
        return chosen if over_bytes <= 0 and over_count <= 0 else None

    def _rank(self, unit: Unit) -> float:
        return unit.priority if self.policy == "cost" else unit.last_used
