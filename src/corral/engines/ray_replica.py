"""One expert's replica on Ray Serve: a corral Runtime that holds just that expert.

Loading, the micro-batcher and measurement are the embedded engine's own code, run
inside the replica; the replica measures (compute seconds and tokens of each call, as
the request's charges) and the ingress prices them, so cost accounting is the same on
both engines. Requests and results are pydantic objects or plain dicts, pickled by Ray
between corral's own processes (never from clients).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from corral.config import Config
from corral.errors import ExpertUnavailable
from corral.observe.cost import CostMeter
from corral.observe.trace import Charge, Trace, activate, new_trace_id
from corral.runtime import BatchStats, ExpertState, Runtime

__all__ = ["CHARGES_KEY", "ExpertReplica", "ReplicaInfo", "single_expert_config"]

# the last item of a chat stream from a replica: the stream's charges, not a chunk
CHARGES_KEY = "corral.charges"


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


class ExpertReplica:
    """The deployment class of every expert (``engines.ray`` names one per expert)."""

    async def __init__(self, config: Config, name: str) -> None:  # type: ignore[misc]
        # Serve awaits an async constructor: a replica counts as started once its expert
        # has loaded, so Serve's readiness is the expert's; a failed load leaves it up,
        # answering 503 as the embedded engine does
        own = single_expert_config(config, name)
        self.runtime = Runtime(own)
        self.runtime.costs = CostMeter(own, default_llm=None)  # measures; the ingress prices
        self.handle = self.runtime.handles[name]
        with contextlib.suppress(ExpertUnavailable):
            await self.runtime.ensure_loaded(self.handle)

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

    def batch_stats(self) -> BatchStats | None:
        """The replica's micro-batcher counters (forward passes vs requests)."""
        batcher = self.handle.batcher
        return batcher.stats if batcher is not None else None

    async def submit(self, request: Any) -> tuple[Any, list[Charge]]:
        with activate(Trace(id=new_trace_id())) as trace:
            result = await self.runtime.submit(self.handle, request)
        return result, trace.charges

    async def chat(self, params: dict[str, Any]) -> tuple[dict[str, Any], list[Charge]]:
        with activate(Trace(id=new_trace_id())) as trace:
            reply = await self.runtime.chat(self.handle, params)
        return reply, trace.charges

    async def chat_stream(self, params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The chunks, then one ``{CHARGES_KEY: [...]}`` item with what they cost."""
        trace = Trace(id=new_trace_id())
        chunks = self.runtime.chat_stream(self.handle, params)
        while True:
            with activate(trace):  # entered per chunk: the generator may resume elsewhere
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
            yield chunk
        yield {CHARGES_KEY: trace.charges}

    def check_health(self) -> None:
        """Serve's health probe: a replica whose expert was loaded and lost is replaced."""
        if self.handle.state == ExpertState.UNLOADED:
            raise RuntimeError(f"expert {self.handle.name!r} is no longer loaded")

    async def __del__(self) -> None:
        await self.runtime.close()
