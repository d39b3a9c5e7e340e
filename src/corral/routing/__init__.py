"""Routing: turn a request into a plan (explicit name, task default, semantic routes,
cascades, the coordinator LLM), run it with fallbacks, and trace every decision."""

from corral.routing.calibration import CascadeFit, FittedRouting
from corral.routing.cascade import CascadeAnswer, ClassifyCascade
from corral.routing.circuit import CircuitBreaker, CircuitState
from corral.routing.coordinator import Coordinator
from corral.routing.dispatch import Dispatcher
from corral.routing.router import Router
from corral.routing.semantic import RouteMatch, SemanticRouter

__all__ = [
    "CascadeAnswer",
    "CascadeFit",
    "CircuitBreaker",
    "CircuitState",
    "ClassifyCascade",
    "Coordinator",
    "Dispatcher",
    "FittedRouting",
    "RouteMatch",
    "Router",
    "SemanticRouter",
]
