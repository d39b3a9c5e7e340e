"""OpenTelemetry spans: HTTP request -> coordinator -> each expert call, exported over
OTLP when ``observe.otlp_endpoint`` is set (``pip install 'corral[otel]'``).

The API package is a base dependency; without a provider every span is a no-op, yet a
caller's W3C ``traceparent`` still sets the trace id corral reports, so its logs,
headers and ``/v1/traces/{id}`` join the caller's trace.

``current_span`` opens no span at all when nothing exports: entering even a no-op span
attaches it to the context, and on a one-sentence embedding that (with the request's
own span) was about a sixth of the event loop's time per request.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from typing import Any

from opentelemetry import trace as otel

from corral.config import ObserveConfig
from corral.errors import ExpertUnavailable

__all__ = ["build_tracer_provider", "current_span", "exports", "tracer_from"]


def build_tracer_provider(observe: ObserveConfig) -> Any | None:
    """An SDK provider exporting to ``observe.otlp_endpoint``; None when unset."""
    if not observe.otlp_endpoint:
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise ExpertUnavailable(
            "observe.otlp_endpoint needs the OpenTelemetry SDK: pip install 'corral[otel]'"
        ) from exc
    provider = TracerProvider(resource=Resource.create({"service.name": "corral"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(observe.otlp_endpoint)))
    return provider


def tracer_from(provider: Any | None) -> otel.Tracer:
    """corral's tracer from ``provider``; a no-op tracer without one (not the global
    provider: two apps in one process, as in tests, must not share exporters)."""
    if provider is None:
        return otel.NoOpTracer()
    tracer: otel.Tracer = provider.get_tracer("corral")
    return tracer


def exports(tracer: otel.Tracer) -> bool:
    """Whether ``tracer``'s spans go anywhere (an SDK provider's, not the no-op one)."""
    return not isinstance(tracer, otel.NoOpTracer)


def current_span(
    tracer: otel.Tracer, name: str, attributes: dict[str, Any] | None = None
) -> AbstractContextManager[object]:
    """``tracer``'s span ``name``, current while the block runs; nothing when the tracer
    exports nowhere (a no-op span would only cost its context attach)."""
    if not exports(tracer):
        return contextlib.nullcontext()
    return tracer.start_as_current_span(name, attributes=attributes)
