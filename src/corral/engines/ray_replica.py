"""One expert's replica on Ray Serve: a corral Runtime that holds just that expert.

Loading, the micro-batcher and measurement are the embedded engine's own code, run
inside the replica; the replica measures (compute seconds and tokens of each call, as
the request's charges) and the ingress prices them, so cost accounting is the same on
both engines. The same holds for the expert's own metrics (its load, resident bytes,
each forward pass's size and queue waits): the replica keeps what it observed in a
``ReplicaReport`` and hands it over with its next reply, once, so the ingress's
``/metrics`` has them as the embedded engine's has (``RemoteRuntime`` records them).
Requests and results are pydantic objects or plain dicts, pickled by Ray between
corral's own processes (never from clients).
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from corral.config import Config
from corral.errors import ExpertUnavailable
from corral.observe.cost import CostMeter
from corral.observe.trace import Charge, Trace, activate, new_trace_id
from corral.runtime import BatchStats, ExpertState, Runtime

__all__ = [
    "CHARGES_KEY",
    "REPORT_KEY",
    "ExpertReplica",
    "LoadReport",
    "Outbox",
    "ReplicaInfo",
    "ReplicaReport",
    "Reply",
    "single_expert_config",
]

# the last item of a chat stream from a replica: the stream's charges and the replica's
# report under these keys, not a chunk
CHARGES_KEY = "corral.charges"
REPORT_KEY = "corral.report"
# forward passes kept for the next reply; only a long run of failing calls (which carry
# no report) reaches it, and then the oldest are dropped rather than memory growing
_MAX_PENDING_BATCHES = 4096


@dataclass(frozen=True)
class LoadReport:
    """A replica's load of its expert, as ``Metrics.observe_load`` takes it."""

    seconds: float
    memory_bytes: int
    device: str


@dataclass
class ReplicaReport:
    """What a replica measured since its last reply: delivered once, with one reply."""

    load: LoadReport | None = None
    batches: list[tuple[int, list[float]]] = field(default_factory=list)  # size, waits


class Outbox:
    """Collects a replica's observations until a reply takes them (one event loop:
    the micro-batcher reports from it, replies are made on it)."""

    def __init__(self) -> None:
        self._load: LoadReport | None = None
        self._batches: deque[tuple[int, list[float]]] = deque(maxlen=_MAX_PENDING_BATCHES)

    def loaded(self, seconds: float, memory_bytes: int, device: str) -> None:
        self._load = LoadReport(seconds, memory_bytes, device)

    def batch(self, size: int, waits: list[float]) -> None:
        self._batches.append((size, waits))

    def take(self) -> ReplicaReport:
        report = ReplicaReport(self._load, list(self._batches))
        self._load = None
        self._batches.clear()
        return report


@dataclass(frozen=True)
class Reply:
    """A replica's answer to one call: the result, what it cost, what it observed."""

    value: Any
    charges: list[Charge]
    report: ReplicaReport


@dataclass(frozen=True)
class ReplicaInfo:
    """What the ingress needs to know of a replica's expert (for /v1/models, costs)."""

    state: str
    reason: str
    device: str
    memory_bytes: int | None
    load_seconds: float | None
    pid: int
    tool_schema: dict[str, Any] | None


def single_expert_config(config: Config, name: str) -> Config:
    """``config`` with only the expert ``name``: a replica holds one expert, and Ray
    places replicas by the resources they reserve, so no budget or routing applies."""
    spec = config.model_named(name)
    assert spec is not None, name
    runtime = config.runtime.model_copy(update={"memory_budget": None, "max_loaded": None})
    server = config.server.model_copy(update={"api_keys": []})  # keys are the ingress's
    return Config(models=[spec], runtime=runtime, server=server, observe=config.observe)


class _ReplicaRuntime(Runtime):
    """The replica's Runtime: its forward passes are reported to the outbox (the
    replica has no metrics registry of its own; the ingress's is the one scraped)."""

    def __init__(self, config: Config, outbox: Outbox) -> None:
        super().__init__(config)
        self.outbox = outbox

    def _batch_observer(self, name: str) -> Callable[[int, list[float]], None] | None:
        return self.outbox.batch


class ExpertReplica:
    """The deployment class of every expert (``engines.ray`` names one per expert)."""

    async def __init__(self, config: Config, name: str) -> None:  # type: ignore[misc]
        # Serve awaits an async constructor: a replica counts as started once its expert
        # has loaded, so Serve's readiness is the expert's; a failed load leaves it up,
        # answering 503 as the embedded engine does
        own = single_expert_config(config, name)
        self.outbox = Outbox()
        self.runtime = _ReplicaRuntime(own, self.outbox)
        self.runtime.costs = CostMeter(own, default_llm=None)  # measures; the ingress prices
        self.handle = self.runtime.handles[name]
        with contextlib.suppress(ExpertUnavailable):
            await self.runtime.ensure_loaded(self.handle)
        if self.handle.state == ExpertState.READY:  # a failed load is not observed (embedded)
            self.outbox.loaded(
                self.handle.load_seconds or 0.0, self.handle.memory_bytes or 0, self.handle.device
            )

    def info(self) -> ReplicaInfo:
        handle = self.handle
        expert = handle.expert
        return ReplicaInfo(
            state=handle.state.value,
            reason=handle.reason,
            device=handle.device,
            memory_bytes=handle.memory_bytes,
            load_seconds=handle.load_seconds,
            pid=os.getpid(),
            tool_schema=expert.tool_schema() if expert is not None else None,
        )

    def describe(self) -> Reply:
        """``info`` for the ingress, with the report (so its load is observed at once);
        ``info`` alone takes nothing from the outbox (tests and operators may ask)."""
        return Reply(self.info(), [], self.outbox.take())

    def batch_stats(self) -> BatchStats | None:
        """The replica's micro-batcher counters (forward passes vs requests)."""
        batcher = self.handle.batcher
        return batcher.stats if batcher is not None else None

    async def submit(self, request: Any) -> Reply:
        with activate(Trace(id=new_trace_id())) as trace:
            result = await self.runtime.submit(self.handle, request)
        return Reply(result, trace.charges, self.outbox.take())

    async def chat(self, params: dict[str, Any]) -> Reply:
        with activate(Trace(id=new_trace_id())) as trace:
            reply = await self.runtime.chat(self.handle, params)
        return Reply(reply, trace.charges, self.outbox.take())

    async def chat_stream(self, params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The chunks, then one ``{CHARGES_KEY: [...], REPORT_KEY: ...}`` item with what
        they cost and what the replica observed."""
        trace = Trace(id=new_trace_id())
        chunks = self.runtime.chat_stream(self.handle, params)
        while True:
            with activate(trace):  # entered per chunk: the generator may resume elsewhere
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
            yield chunk
        yield {CHARGES_KEY: trace.charges, REPORT_KEY: self.outbox.take()}

    def check_health(self) -> None:
        """Serve's health probe: a replica whose expert was loaded and lost is replaced."""
        if self.handle.state == ExpertState.UNLOADED:
            raise RuntimeError(f"expert {self.handle.name!r} is no longer loaded")

    async def __del__(self) -> None:
        await self.runtime.close()
