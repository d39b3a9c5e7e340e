"""Routing: turning a request into a plan. Today: the LLM coordinator with experts as tools."""

from corral.routing.coordinator import Coordinator, CoordinatorResult, Step

__all__ = ["Coordinator", "CoordinatorResult", "Step"]
