"""What the dashboard and operators read: experts' state, recent traces, usage and cost.

``GET /v1/experts``   every expert: state, device, memory, p50/p95 and requests/s
``GET /v1/traces``    the newest requests, one line each; ``/v1/traces/{id}`` in full
``GET /v1/usage``     cost and the LLM-only counterfactual, grouped by day, hour, key...

With API keys, a key sees only its own requests and the experts it may use; an admin key
(``role: admin``) sees everything.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Request
from starlette.exceptions import HTTPException

from corral.access import Grant
from corral.observe.trace import Trace, TraceStore
from corral.observe.usage import GROUPS, Group, UsageStore, parse_since
from corral.runtime import ExpertHost
from corral.server.schemas import ERROR_RESPONSES

__all__ = ["api"]

api = APIRouter(prefix="/v1", tags=["observe"], responses=ERROR_RESPONSES)
_RATE_WINDOW_S = 60.0  # requests/s is counted over the last minute


def _grant(request: Request) -> Grant:
    grant: Grant = request.app.state.api_keys.check(request, limited=False)
    return grant


def _sees_all(grant: Grant) -> bool:
    """Without keys (no owner) or with an admin key: every request, every expert."""
    return grant.owner is None or grant.admin


def _traces(request: Request, grant: Grant, limit: int) -> list[Trace]:
    """The newest ``limit`` traces this key may see, newest first."""
    store: TraceStore = request.app.state.traces
    if _sees_all(grant):
        return store.recent(limit)
    return [t for t in store.recent(store.capacity) if t.api_key == grant.owner][:limit]


@api.get("/traces/{trace_id}")
async def get_trace(trace_id: str, request: Request) -> dict[str, object]:
    """Every routing decision, expert step and charge of a recent request (newest 2048 kept)."""
    grant = _grant(request)
    trace = request.app.state.traces.get(trace_id)
    if trace is None or not (_sees_all(grant) or trace.api_key == grant.owner):
        raise HTTPException(
            404, f"no trace {trace_id[:64]!r}: unknown, or older than the newest kept"
        )
    data: dict[str, object] = trace.to_dict()
    return data


@api.get("/traces")
async def list_traces(
    request: Request, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> dict[str, object]:
    """The newest requests first, one summary line each (with keys: the key's own)."""
    return {"data": [_summary(t) for t in _traces(request, _grant(request), limit)]}


@api.get("/experts")
async def list_experts(request: Request) -> dict[str, object]:
    """Each expert's state and measured memory, with latency and rate from recent traces
    (with keys: the experts the key may use, measured on its own requests)."""
    grant = _grant(request)
    traces = _traces(request, grant, request.app.state.traces.capacity)
    runtime: ExpertHost = request.app.state.runtime
    now = time.time()
    data = []
    for handle in runtime.handles.values():
        if not (_sees_all(grant) or grant.allows(handle.name)):
            continue
        served = [t for t in traces if t.expert == handle.name and t.seconds is not None]
        latencies = np.array([t.seconds for t in served], dtype=float)
        recent = sum(1 for t in served if now - t.started_at <= _RATE_WINDOW_S)
        data.append(
            {
                "name": handle.name,
                "task": handle.task.value if handle.task else None,
                "backend": handle.resolved.backend,
                "state": handle.state.value,
                "reason": handle.reason or None,
                "device": handle.device or None,
                "memory_bytes": handle.memory_bytes,
                "load_seconds": handle.load_seconds,
                "pinned": handle.spec.pin,
                "requests": len(served),
                "requests_per_second": recent / _RATE_WINDOW_S,
                "p50_seconds": _percentile(latencies, 50),
                "p95_seconds": _percentile(latencies, 95),
            }
        )
    return {"data": data}


@api.get("/usage")
async def usage(
    request: Request,
    group_by: Annotated[Group, Query(description=f"one of {', '.join(GROUPS)}")] = "day",
    since: Annotated[str | None, Query(description="e.g. 30m, 24h, 7d")] = None,
) -> dict[str, Any]:
    """Requests, compute, tokens, cost and what the LLM alone would have cost, per group."""
    grant = _grant(request)
    store: UsageStore | None = request.app.state.usage
    if store is None:
        raise HTTPException(404, "usage recording is off (observe.usage: false)")
    start = parse_since(since) if since else None
    key = None if _sees_all(grant) else grant.owner
    rows, totals = await asyncio.to_thread(
        lambda: (
            store.report(group_by, since=start, api_key=key),
            store.totals(since=start, api_key=key),
        )
    )
    return {"group_by": group_by, "since": start, "data": rows, "totals": totals}


def _summary(trace: Trace) -> dict[str, object]:
    return {
        "id": trace.id,
        "started_at": trace.started_at,
        "method": trace.method,
        "path": trace.path,
        "status": trace.status,
        "seconds": trace.seconds,
        "expert": trace.expert,
        "route": trace.route,
        "cost": trace.cost,
        "llm_only_cost": trace.counterfactual_cost,
    }


def _percentile(values: np.ndarray, q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None
