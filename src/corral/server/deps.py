"""FastAPI dependencies: the runtime and router, behind the API-key check.

They are ``async`` so they run in the request's own task: the grant the check sets is
then seen by the endpoint and everything it awaits."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from corral.routing import Router
from corral.runtime import ExpertHost


async def get_runtime(request: Request) -> ExpertHost:
    request.app.state.api_keys.check(request)
    runtime: ExpertHost = request.app.state.runtime
    return runtime


async def get_router(request: Request) -> Router:
    request.app.state.api_keys.check(request)
    router: Router = request.app.state.router
    return router


RuntimeDep = Annotated[ExpertHost, Depends(get_runtime)]
RouterDep = Annotated[Router, Depends(get_router)]
