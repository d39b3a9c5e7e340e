"""What a fit will take in memory, estimated from the request before anything runs.

Row and feature limits bound a request's size, not the memory its fit takes: a
100,000-value series with a window of 1,000 is a 600 kB body but 99,001 windows of 1,000
float64s (800 MB), held several times over while standardised and fitted (4.1 GB of RSS
measured). Each estimate counts the arrays the fit holds at once; over
``server.limits.max_fit_bytes`` the request is a 413 naming the limit and the estimate.
"""

from __future__ import annotations

from corral.config import LimitsConfig
from corral.errors import PayloadTooLarge

__all__ = ["anomaly_fit_bytes", "check_fit_memory", "graph_fit_bytes"]

_FLOAT64, _FLOAT32, _INT64 = 8, 4, 8
# the rows (windows), their standardised copy, the backend's own copies and scratch:
# measured, a fit's RSS grows by 5-7 times its rows' float64 bytes (4.1 GB for 800 MB)
_ANOMALY_COPIES = 6
# per layer: activations, their gradients, and the messages gathered along edges
_GRAPH_PER_LAYER = 3


def anomaly_fit_bytes(rows: int, features: int) -> int:
    """Rows (or a series' windows) x features x float64 x the copies a fit holds."""
    return rows * features * _FLOAT64 * _ANOMALY_COPIES


def graph_fit_bytes(nodes: int, features: int, edges: int, hidden: int, layers: int) -> int:
    """The features (and their standardised copy), the edge index both ways, and per
    layer the activations, gradients and messages of every node and edge."""
    inputs = nodes * features * _FLOAT32 * 2 + edges * 2 * 2 * _INT64
    per_layer = (nodes + 2 * edges) * hidden * _FLOAT32 * _GRAPH_PER_LAYER
    return inputs + layers * per_layer


def check_fit_memory(estimate: int, what: str, limits: LimitsConfig, param: str) -> None:
    """413 naming ``server.limits.max_fit_bytes`` when ``estimate`` is over it."""
    if estimate > limits.max_fit_bytes:
        raise PayloadTooLarge(
            f"{what} would take about {_mib(estimate)} of memory; "
            f"server.limits.max_fit_bytes is {_mib(limits.max_fit_bytes)} "
            f"({limits.max_fit_bytes} bytes): send fewer rows, a shorter window, or raise it",
            param=param,
        )


def _mib(count: int) -> str:
    return f"{count / 2**20:,.0f} MiB"
