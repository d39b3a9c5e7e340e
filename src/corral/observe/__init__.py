"""Observability: Prometheus metrics per endpoint, expert and batch."""

from corral.observe.metrics import Metrics, MetricsMiddleware

__all__ = ["Metrics", "MetricsMiddleware"]
