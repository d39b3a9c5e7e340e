"""Shadow mode: run an alternative route on a sample of live classify traffic, off the
response path, and log agreement and latency for ``corral eval --from-shadow``.

The caller's answer never waits for the shadow: it runs as a background task after the
primary answer is ready. Each item becomes one JSON line in the shadow log (appended
under a lock, flushed per request), so a crash loses at most the request in flight.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from corral.config import ShadowConfig
from corral.errors import CorralError
from corral.observe.trace import Trace, activate, new_trace_id
from corral.tasks.text.classify import ClassifyInput

if TYPE_CHECKING:
    from corral.routing.cascade import CascadeAnswer

__all__ = ["Shadow"]

# the planner's classify (a cascade, an LLM or a classifier, by name): what the shadow runs
Classify = Callable[[str | None, ClassifyInput], Awaitable[list["CascadeAnswer"]]]

log = logging.getLogger("corral.shadow")


class Shadow:
    def __init__(
        self, classify: Classify, config: ShadowConfig, *, seed: int | None = None
    ) -> None:
        self.classify = classify
        self.config = config
        self._random = random.Random(seed)
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()

    def maybe_run(
        self,
        model: str | None,
        request: ClassifyInput,
        primary: list[CascadeAnswer],
        primary_seconds: float,
    ) -> None:
        """Start the shadow for this request if the sample says so; returns at once."""
        route = model or primary[0].expert
        if route == self.config.route or self._random.random() >= self.config.sample:
            return
        task = asyncio.create_task(self._run(route, request, primary, primary_seconds))
        self._tasks.add(task)  # keep a reference until done, or the task may be collected
        task.add_done_callback(self._tasks.discard)

    async def _run(
        self,
        route: str,
        request: ClassifyInput,
        primary: list[CascadeAnswer],
        primary_seconds: float,
    ) -> None:
        started = time.perf_counter()
        try:  # under a trace of its own: the caller's was finished and sent
            with activate(Trace(id=new_trace_id(), method="SHADOW", path="/v1/classify")):
                shadow = await self.classify(self.config.route, request)
        except CorralError as exc:
            log.warning("shadow route %r failed: %s", self.config.route, exc.message)
            return
        seconds = time.perf_counter() - started
        lines = [
            json.dumps(
                {
                    "at": time.time(),
                    "text": text,
                    "primary": route,
                    "primary_label": p.classification.labels[0],
                    "primary_seconds": primary_seconds / len(primary),
                    "shadow": self.config.route,
                    "shadow_label": s.classification.labels[0],
                    "shadow_seconds": seconds / len(shadow),
                    "agree": p.classification.labels[0] == s.classification.labels[0],
                }
            )
            for text, p, s in zip(request.texts, primary, shadow, strict=True)
        ]
        async with self._lock:  # one writer at a time; the file I/O off the event loop
            await asyncio.to_thread(self._append, "".join(line + "\n" for line in lines))

    def _append(self, text: str) -> None:
        with self.config.log.open("a", encoding="utf-8") as file:
            file.write(text)

    async def drain(self) -> None:
        """Let running shadows finish (on shutdown), so their lines are not lost."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
