"""Experts: one small interface (``Expert``) and one module per task family."""

from corral.experts.base import Expert, LoadContext, SharedModels
from corral.experts.registry import REGISTRY, expert_class

__all__ = ["REGISTRY", "Expert", "LoadContext", "SharedModels", "expert_class"]
