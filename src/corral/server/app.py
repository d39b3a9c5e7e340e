"""``create_app(config, runtime)``: the FastAPI application, with nothing global."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException

from corral import __version__
from corral.config import Config
from corral.observe import Metrics, MetricsMiddleware, TraceStore
from corral.observe.otel import build_tracer_provider, tracer_from
from corral.routing import FittedRouting, Router
from corral.runtime import LoadListener, Runtime
from corral.server import routes_chat, routes_openai, routes_tasks, tracing
from corral.server.auth import ApiKeys
from corral.server.errors import install_error_handlers
from corral.server.limits import BodySizeLimit

__all__ = ["create_app"]


def create_app(
    config: Config,
    runtime: Runtime | None = None,
    *,
    listener: LoadListener | None = None,
    prewarm: bool = True,
    fitted: FittedRouting | None = None,
    tracer_provider: Any | None = None,
) -> FastAPI:
    """Build the app. Experts pre-warm in the background so /healthz answers at once.
    ``fitted`` is the routing state ``corral route fit`` saved (calibrated cascades);
    ``tracer_provider`` an OpenTelemetry SDK provider (default: from ``observe:``)."""
    runtime = runtime or Runtime(config)
    if runtime.metrics is None:
        runtime.metrics = Metrics()  # experts report loads and batches to the app's registry
    metrics = runtime.metrics

    owned_provider = tracer_provider is None
    tracer_provider = tracer_provider or build_tracer_provider(config.observe)
    tracer = tracer_from(tracer_provider)
    router = Router(runtime, fitted, tracer=tracer)

    async def warm() -> None:
        await runtime.load_all(listener)
        await router.prepare()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(warm()) if prewarm else None
        app.state.loading = loading
        try:
            yield
        finally:
            if loading is not None:
                loading.cancel()
                await asyncio.gather(loading, return_exceptions=True)
            if router.shadow is not None:
                await router.shadow.drain()
            await runtime.close()
            if owned_provider and tracer_provider is not None:
                tracer_provider.shutdown()  # flush the spans still batched

    app = FastAPI(
        title="corral",
        version=__version__,
        summary="Many small specialised models behind one endpoint.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.router = router
    app.state.traces = TraceStore()
    app.state.api_keys = ApiKeys(config.server.api_keys)
    install_error_handlers(app)
    # outermost last: metrics see the expert header that tracing adds
    app.add_middleware(BodySizeLimit, limit=config.server.limits.max_body_bytes)
    app.add_middleware(tracing.TraceMiddleware, store=app.state.traces, tracer=tracer)
    if config.observe.metrics:
        app.add_middleware(MetricsMiddleware, metrics=metrics)
    for module in (routes_openai, routes_chat, routes_tasks, tracing):
        app.include_router(module.api)

    @app.get("/metrics", tags=["health"], include_in_schema=config.observe.metrics)
    async def prometheus_metrics(request: Request) -> Response:
        """Prometheus text exposition of corral's metrics (needs an API key if keys are set)."""
        if not config.observe.metrics:
            raise HTTPException(404, "metrics are off (observe.metrics: false)")
        request.app.state.api_keys.check(request)
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process is up and serving HTTP."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz(request: Request) -> JSONResponse:
        """Readiness: 200 once every loadable expert has loaded; lists those unavailable."""
        rt: Runtime = request.app.state.runtime
        experts = {h.name: h.state.value for h in rt.handles.values()}
        status = 200 if rt.ready else 503
        return JSONResponse({"ready": rt.ready, "experts": experts}, status_code=status)

    return app
