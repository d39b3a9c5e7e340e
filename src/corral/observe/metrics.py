"""Prometheus metrics, in a registry owned by one app (no global state, so several apps
and tests can live in one process).

Labels are bounded: endpoints are route templates (an unknown path counts as
``unmatched``), experts and routes are config names (``semantic:ticket-triage``).
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["Metrics", "MetricsMiddleware"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """Every metric corral exports, named ``corral_*`` as Prometheus conventions ask."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "corral_requests",
            "HTTP requests by endpoint, expert, route and status",
            ["endpoint", "expert", "route", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "corral_request_duration_seconds",
            "HTTP request latency, to the last byte",
            ["endpoint", "expert", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "corral_batch_size",
            "Items per forward pass",
            ["expert"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "corral_queue_wait_seconds",
            "Time a request waited for its forward pass to start",
            ["expert"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.load_seconds = Histogram(
            "corral_model_load_seconds",
            "Time to load an expert",
            ["expert"],
            # under 10 ms: an expert on weights another expert had already loaded
            buckets=(0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.resident_bytes = Gauge(
            "corral_resident_bytes",
            "Memory measured for a loaded expert",
            ["expert", "device"],
            registry=r,
        )

        self.tokens = Counter(
            "corral_tokens",
            "Tokens through each expert: `in` (prompt/input) and `out` (generated)",
            ["expert", "direction"],
            registry=r,
        )
        self.routes = Counter(
            "corral_route_decisions",
            "Routing decisions by stage (semantic, cascade) and the route or expert chosen",
            ["stage", "choice"],
            registry=r,
        )
        self.escalations = Counter(
            "corral_escalations",
            "Cascade items passed on from one stage's expert to the next",
            ["cascade", "source", "target"],
            registry=r,
        )
        self.fallbacks = Counter(
            "corral_fallbacks",
            "Requests sent to a fallback because the expert failed or its circuit was open",
            ["expert", "fallback"],
            registry=r,
        )

        self.cancelled = Counter(
            "corral_cancelled_batches",
            "Batches an expert stopped mid-way because every caller had gone (timeout, "
            "client disconnect)",
            ["expert"],
            registry=r,
        )
        self.worker_crashes = Counter(
            "corral_worker_crashes",
            "Isolated experts' worker processes that died while serving (then restarted)",
            ["expert"],
            registry=r,
        )
        self.evictions = Counter(
            "corral_evictions",
            "Experts unloaded to make room for another within the memory budget",
            ["expert", "device"],
            registry=r,
        )
        self.unload_seconds = Histogram(
            "corral_model_unload_seconds",
            "Time to evict an expert",
            ["expert"],
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.budget_bytes = Gauge(
            "corral_budget_bytes", "Memory budget per device", ["device"], registry=r
        )
        self.admission_wait = Histogram(
            "corral_admission_wait_seconds",
            "Time a load waited for busy experts to free the budget",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.cost = Counter(
            "corral_cost",
            "What requests cost, by answering expert (in the currency of the config's prices)",
            ["expert"],
            registry=r,
        )
        self.llm_only_cost = Counter(
            "corral_llm_only_cost",
            "What the same requests would have cost on the default LLM alone",
            ["expert"],
            registry=r,
        )

    def observe_cost(self, expert: str, cost: float | None, llm_only: float | None) -> None:
        if cost:
            self.cost.labels(expert).inc(cost)
        if llm_only:
            self.llm_only_cost.labels(expert).inc(llm_only)

    def observe_batch(self, expert: str, size: int, waits: list[float]) -> None:
        self.batch_size.labels(expert).observe(size)
        for wait in waits:
            self.queue_wait.labels(expert).observe(wait)

    def count_tokens(self, expert: str, prompt: int, completion: int = 0) -> None:
        if prompt:
            self.tokens.labels(expert, "in").inc(prompt)
        if completion:
            self.tokens.labels(expert, "out").inc(completion)

    def observe_load(self, expert: str, seconds: float, memory_bytes: int, device: str) -> None:
        self.load_seconds.labels(expert).observe(seconds)
        self.resident_bytes.labels(expert, device).set(memory_bytes)

    def observe_eviction(self, expert: str, device: str, seconds: float) -> None:
        self.evictions.labels(expert, device).inc()
        self.unload_seconds.labels(expert).observe(seconds)

    def unloaded(self, expert: str, device: str) -> None:
        self.resident_bytes.labels(expert, device).set(0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every HTTP request; the expert comes from ``x-corral-expert``."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status, expert, route = 500, "", ""

        async def observed_send(message: Message) -> None:
            nonlocal status, expert, route
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = dict(message.get("headers", []))
                expert = headers.get(b"x-corral-expert", b"").decode("latin-1")
                route = headers.get(b"x-corral-route", b"").decode("latin-1")
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            endpoint = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(endpoint, expert, route, str(status)).inc()
            elapsed = time.perf_counter() - started
            self.metrics.duration.labels(endpoint, expert, route).observe(elapsed)
