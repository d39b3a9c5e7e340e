"""Engines: where the experts of one config run.

* ``embedded`` (default): one process, asyncio; ``corral.runtime.Runtime``.
* ``ray``: Ray Serve, each expert a deployment with its own replicas, corral's app and
  router the ingress (``corral.engines.ray``; ``pip install 'corral[ray]'``).

Both are built from the same YAML; routes, traces, metrics and costs are the same code.
"""

from corral.engines.embedded import EmbeddedEngine

__all__ = ["EmbeddedEngine"]
