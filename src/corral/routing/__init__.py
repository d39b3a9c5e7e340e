"""Routing: turn a request into a plan (explicit name, task default, semantic routes,
cascades, the coordinator LLM), run it with fallbacks, and trace every decision."""

from corral.routing.circuit import CircuitBreaker, CircuitState
from corral.routing.coordinator import Coordinator
from corral.routing.router import ExpertTimeout, Router
from corral.routing.semantic import RouteMatch, SemanticRouter
from corral.routing.trace import Decision, Step, Trace, TraceStore, current_trace

__all__ = [
    "CircuitBreaker",
    "CircuitState",
    "Coordinator",
    "Decision",
    "ExpertTimeout",
    "RouteMatch",
    "Router",
    "SemanticRouter",
    "Step",
    "Trace",
    "TraceStore",
    "current_trace",
]
