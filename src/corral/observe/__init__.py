"""Observability: request traces, Prometheus metrics, logs."""

from corral.observe.metrics import Metrics, MetricsMiddleware
from corral.observe.trace import Decision, Step, Trace, TraceStore, current_trace

__all__ = [
    "Decision",
    "Metrics",
    "MetricsMiddleware",
    "Step",
    "Trace",
    "TraceStore",
    "current_trace",
]
