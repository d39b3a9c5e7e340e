"""The dispatcher: runs a call on the expert the planner chose, within its timeout, behind
its circuit breaker, and on its fallbacks while server-side errors last.

Every expert call goes through ``Dispatcher.call``: the router's own, a cascade's stages,
the coordinator's tool calls and the shadow route's. It decides nothing about *which*
expert answers a request; that is the planner's (``router.Router``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from opentelemetry import trace as otel

from corral.errors import ExpertError, ExpertTimeout, ExpertUnavailable, NoCapacity
from corral.experts.operation import check_request
from corral.observe.otel import current_span
from corral.observe.trace import current_trace
from corral.routing.circuit import CircuitBreaker
from corral.runtime import ExpertHandle, ExpertHost
from corral.runtime.cancel import seconds_left, tracking_progress

__all__ = ["Dispatcher"]

T = TypeVar("T")


class Dispatcher:
    """One per server: the breakers, the fallback chains and the expert spans."""

    def __init__(self, runtime: ExpertHost, *, tracer: otel.Tracer | None = None) -> None:
        self.runtime = runtime
        self.tracer = tracer or otel.NoOpTracer()
        routing = runtime.config.routing
        circuit = routing.circuit
        self.breakers = {
            name: CircuitBreaker(circuit.failures, circuit.cooldown_s) for name in runtime.handles
        }
        self.fallbacks = {
            source: [self.handle(name) for name in targets]
            for source, targets in routing.fallbacks.items()
        }

    def handle(self, name: str) -> ExpertHandle:
        """The handle of a model named in the config (names were checked when it loaded)."""
        spec = self.runtime.config.model_named(name)
        assert spec is not None, name
        return self.runtime.handles[spec.name]

    async def call(
        self, handle: ExpertHandle, run: Callable[[ExpertHandle], Awaitable[T]]
    ) -> tuple[ExpertHandle, T]:
        """``run(expert)`` on ``handle``, then on each fallback while server-side errors
        last. Request errors (4xx) are the caller's and return at once."""
        trace = current_trace()
        error: ExpertError | None = None
        for candidate in [handle, *self.fallbacks.get(handle.name, [])]:
            breaker = self.breakers[candidate.name]
            if not breaker.allow():
                wait = breaker.retry_after()
                trace.decide(
                    "circuit", "", f"circuit of {candidate.name!r} open ({wait:.0f}s left)"
                )
                error = error or ExpertUnavailable(
                    f"expert {candidate.name!r} failed {breaker.threshold} times in a row; "
                    f"its circuit is open for {wait:.0f}s more",
                    retry_after=wait,
                )
                continue
            if error is not None:
                trace.decide("fallback", candidate.name, f"after: {error.message}")
                self._count_fallback(handle.name, candidate.name)
            try:
                result = await self._within_timeout(candidate, run)
            except ExpertError as exc:
                if isinstance(exc, NoCapacity) or (isinstance(exc, ExpertTimeout) and exc.queued):
                    breaker.record_cancelled()  # a full budget or a queue: not the expert's
                else:
                    breaker.record_failure()
                error = exc
                continue
            except BaseException:  # the caller went away or the request was invalid
                breaker.record_cancelled()
                raise
            breaker.record_success()
            return candidate, result
        assert error is not None
        raise error

    async def _within_timeout(
        self, handle: ExpertHandle, run: Callable[[ExpertHandle], Awaitable[T]]
    ) -> T:
        """``run`` within the expert's ``timeout_s`` and the request's own deadline; on
        either the work is cancelled (it stops at its next safe point, see ``cancel``)."""
        limit, message = handle.spec.timeout_s, f"expert {handle.name!r} took longer than "
        requested = seconds_left()
        if requested is not None and (limit is None or requested[0] < limit):
            limit, message = requested[0], f"the request's timeout_s ({requested[1]:g}s) passed; "
            message += f"expert {handle.name!r} took longer than "
        attributes = {"corral.expert": handle.name, "corral.task": str(handle.task)}
        with (
            current_span(self.tracer, f"expert {handle.name}", attributes),
            tracking_progress() as progress,
        ):
            try:
                async with asyncio.timeout(limit):
                    return await run(handle)
            except TimeoutError:
                timeout = ExpertTimeout(message + f"{limit:g}s")
                timeout.queued = progress.started is False  # queued in the batcher all along
                if timeout.queued:
                    timeout.message += " (still queued behind other requests)"
                    current_trace().decide("timeout", "", timeout.message)
                raise timeout from None

    def _count_fallback(self, source: str, target: str) -> None:
        if self.runtime.metrics is not None:
            self.runtime.metrics.fallbacks.labels(source, target).inc()

    async def submit(self, handle: ExpertHandle, request: Any) -> tuple[ExpertHandle, Any]:
        """A task request (an operation's input) on ``handle`` or its fallbacks, first held
        to ``server.limits`` as its operation says: every caller (a route, a tool call, a
        cascade stage) gets the same 413 for the same input."""
        check_request(request, self.runtime.config.server.limits)
        return await self.call(handle, lambda h: self.runtime.submit(h, request))

    async def chat(
        self, handle: ExpertHandle, params: dict[str, Any]
    ) -> tuple[ExpertHandle, dict[str, Any]]:
        return await self.call(handle, lambda h: self.runtime.chat(h, params))

    async def chat_stream(
        self, handle: ExpertHandle, params: dict[str, Any]
    ) -> tuple[ExpertHandle, AsyncIterator[dict[str, Any]]]:
        """Fallbacks apply until the first chunk; after that the stream is committed."""

        async def start(h: ExpertHandle) -> AsyncIterator[dict[str, Any]]:
            chunks = self.runtime.chat_stream(h, params).__aiter__()
            first = await anext(chunks)
            return _prepend(first, chunks)

        return await self.call(handle, start)


async def _prepend(
    first: dict[str, Any], rest: AsyncIterator[dict[str, Any]]
) -> AsyncIterator[dict[str, Any]]:
    yield first
    with contextlib.suppress(StopAsyncIteration):
        async for chunk in rest:
            yield chunk
