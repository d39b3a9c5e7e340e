"""The embedded engine: every expert in this process (``corral.runtime.Runtime``)."""

from corral.runtime import Runtime as EmbeddedEngine

__all__ = ["EmbeddedEngine"]
