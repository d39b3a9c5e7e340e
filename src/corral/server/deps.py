"""FastAPI dependencies: the runtime and router, behind the API-key check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from corral.routing import Router
from corral.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    request.app.state.api_keys.check(request)
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_router(request: Request) -> Router:
    request.app.state.api_keys.check(request)
    router: Router = request.app.state.router
    return router


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
RouterDep = Annotated[Router, Depends(get_router)]
