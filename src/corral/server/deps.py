"""FastAPI dependencies: the runtime and the API-key check, taken from ``app.state``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response

from corral.runtime import ExpertHandle, Runtime


def get_runtime(request: Request) -> Runtime:
    request.app.state.api_keys.check(request)
    runtime: Runtime = request.app.state.runtime
    return runtime


def mark_expert(response: Response, handle: ExpertHandle) -> None:
    """Say which expert answered, so clients and logs can tell without a trace lookup."""
    response.headers["x-corral-expert"] = handle.name


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
