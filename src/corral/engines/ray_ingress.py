"""The ingress deployment on Ray Serve: corral's own FastAPI app and Router.

The same endpoints, OpenAI compatibility, auth, limits, traces and metrics as the
embedded server: the app is ``create_app`` itself, given a ``RemoteRuntime`` whose
experts are the other deployments of the application.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

from corral.config import Config
from corral.engines.ray_runtime import RemoteRuntime
from corral.routing import FittedRouting

__all__ = ["Ingress"]


@serve.ingress()
class Ingress:
    """One replica: the app built on the replica (``__serve_build_asgi_app__``)."""

    def __init__(
        self,
        config: Config,
        experts: Mapping[str, DeploymentHandle],
        fitted: FittedRouting | None = None,
    ) -> None:
        self.config = config
        self.runtime = RemoteRuntime(config, experts)
        self.fitted = fitted

    def __serve_build_asgi_app__(self) -> FastAPI:
        from corral.server import create_app

        return create_app(self.config, self.runtime, fitted=self.fitted)
