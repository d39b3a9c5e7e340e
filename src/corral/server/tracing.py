"""One trace per API request: created here, filled in by the router, stored on the way out.

The middleware opens the request's OpenTelemetry server span (child of the caller's
W3C ``traceparent`` when there is one, whose trace id corral's trace then takes), sets
the trace as current, adds ``x-corral-trace-id``, ``x-corral-expert`` and
``x-corral-route`` to the response, then records status and duration and keeps the
trace for ``GET /v1/traces/{id}``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager

from opentelemetry import propagate
from opentelemetry import trace as otel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral.observe.otel import exports
from corral.observe.trace import Trace, TraceStore, activate, new_trace_id

__all__ = ["TraceMiddleware"]

log = logging.getLogger("corral.requests")
_TRACED_PREFIX = "/v1/"
_NOT_TRACED = ("/v1/traces", "/v1/usage", "/v1/experts")  # looking is not itself traced


class TraceMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        store: TraceStore,
        tracer: otel.Tracer,
        on_finish: Callable[[Trace], None] | None = None,
    ) -> None:
        self.app = app
        self.store = store
        self.tracer = tracer
        self.on_finish = on_finish  # settles cost and records usage

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or not path.startswith(_TRACED_PREFIX)
            or path.startswith(_NOT_TRACED)
        ):
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        with self._server_span(scope, method, path) as span:
            context = span.get_span_context() if span is not None else None
            valid = context is not None and context.is_valid
            trace_id = format(context.trace_id, "032x") if context and valid else new_trace_id()
            trace = Trace(id=trace_id, method=method, path=path)

            async def traced_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    trace.status = message["status"]
                    headers = _headers(trace, message)
                    message["headers"] = [*message.get("headers", []), *headers]
                await send(message)

            with activate(trace):
                try:
                    await self.app(scope, receive, traced_send)
                finally:
                    trace.seconds = trace.elapsed()
                    if self.on_finish is not None:
                        self.on_finish(trace)
                    self.store.add(trace)
                    _log_request(trace)
                    if span is not None:
                        span.set_attributes(_span_attributes(trace))

    def _server_span(
        self, scope: Scope, method: str, path: str
    ) -> AbstractContextManager[otel.Span | None]:
        """The request's server span, child of the caller's ``traceparent``; none when
        spans export nowhere and the caller sent no ``traceparent`` (then there is no
        trace id to take and nothing to record)."""
        headers = scope["headers"]
        if not exports(self.tracer) and not any(k == b"traceparent" for k, _ in headers):
            return contextlib.nullcontext()
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers}
        return self.tracer.start_as_current_span(
            f"{method} {path}",
            context=propagate.extract(carrier),
            kind=otel.SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": path},
        )


def _span_attributes(trace: Trace) -> dict[str, str | int]:
    attributes: dict[str, str | int] = {"http.response.status_code": trace.status or 500}
    if trace.expert:
        attributes["corral.expert"] = trace.expert
    if trace.route:
        attributes["corral.route"] = trace.route
    return attributes


def _log_request(trace: Trace) -> None:
    """One line per API request: what answered it, how it was chosen, how long it took
    (in JSON logs also as fields, next to the trace id)."""
    fields = {
        "method": trace.method,
        "path": trace.path,
        "status": trace.status,
        "seconds": round(trace.seconds or 0.0, 6),
        "expert": trace.expert,
        "route": trace.route,
        "cost": trace.cost,
        "llm_only_cost": trace.counterfactual_cost,
    }
    log.info(
        "%s %s %s %.1f ms expert=%s route=%s",
        trace.method,
        trace.path,
        trace.status,
        (trace.seconds or 0.0) * 1000,
        trace.expert,
        trace.route,
        extra={"fields": fields},
    )


def _headers(trace: Trace, message: Message) -> list[tuple[bytes, bytes]]:
    present = {name.lower() for name, _ in message.get("headers", [])}
    headers = [(b"x-corral-trace-id", trace.id.encode())]
    if trace.expert and b"x-corral-expert" not in present:
        headers.append((b"x-corral-expert", trace.expert.encode()))
    if trace.route:
        headers.append((b"x-corral-route", trace.route.encode()))
    return headers
