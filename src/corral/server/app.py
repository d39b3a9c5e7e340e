"""``create_app(config, runtime)``: the FastAPI application, with nothing global."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException

from corral import __version__
from corral.config import Config, Task
from corral.errors import CorralError, ModelNotFound
from corral.observe import Metrics, MetricsMiddleware, Trace, TraceStore
from corral.observe.cost import CostMeter, time_llm
from corral.observe.otel import build_tracer_provider, tracer_from
from corral.observe.usage import UsageStore, default_usage_path
from corral.routing import FittedRouting, Router
from corral.runtime import ExpertHost, ExpertState, LoadListener, Runtime
from corral.server import routes_models, routes_observe, tracing
from corral.server.auth import ApiKeys
from corral.server.body_check import JsonBodyCheck
from corral.server.disconnect import CancelOnDisconnect
from corral.server.errors import install_error_handlers
from corral.server.hosts import HostGuard
from corral.server.limits import BodySizeLimit
from corral.server.schemas import ERROR_RESPONSES
from corral.tasks import FAMILIES
from corral.tasks.anomaly.streams import StreamWindows
from corral.tasks.chat.responses import ResponseStore
from corral.tasks.chat.upstream_health import probe_upstreams, watch_upstreams

__all__ = ["create_app"]

log = logging.getLogger("corral.server")
_DASHBOARD = Path(__file__).parent / "dashboard"
# the dashboard loads nothing from elsewhere: no CDN, no inline script
_DASHBOARD_HEADERS = {"content-security-policy": "default-src 'self'; object-src 'none'"}


def create_app(
    config: Config,
    runtime: ExpertHost | None = None,
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
    runtime.costs = costs = _cost_meter(config, runtime)
    usage = _usage_store(config)
    api_keys = ApiKeys(config.server)

    async def warm() -> None:
        await probe_upstreams(runtime)  # before readiness can be claimed
        prefer = await asyncio.to_thread(_most_used, usage)
        await runtime.load_all(listener, prefer=prefer)
        await router.prepare()
        await _time_default_llm(runtime, costs)

    def settle(trace: Trace) -> None:
        """A finished request: price it, count it against its client's token rate, and
        keep it in the usage store."""
        if not (trace.charges or trace.expert):
            return  # nothing ran (a listing, a rejected request): nothing to account
        api_keys.spend_tokens(trace.client, sum(c.tokens_in + c.tokens_out for c in trace.charges))
        costs.settle(trace)
        metrics.observe_cost(trace.expert or "", trace.cost, trace.counterfactual_cost)
        if usage is not None:
            usage.record(trace)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(warm()) if prewarm else None
        app.state.loading = loading
        watching = asyncio.create_task(watch_upstreams(runtime))
        try:
            yield
        finally:
            for task in (loading, watching):
                if task is not None:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
            if router.shadow is not None:
                await router.shadow.drain()
            await runtime.close()
            if usage is not None:
                usage.close()  # waits for the rows still queued
            if owned_provider and tracer_provider is not None:
                tracer_provider.shutdown()  # flush the spans still batched

    app = FastAPIOffline(  # /docs and /redoc load their scripts from here, not a CDN
        static_url="/docs-assets",
        title="corral",
        version=__version__,
        summary="Many small specialised models behind one endpoint.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.router = router
    app.state.traces = TraceStore()
    app.state.api_keys = api_keys
    app.state.usage = usage
    app.state.anomaly_streams = StreamWindows(config.server.limits.max_streams)
    app.state.responses = ResponseStore()  # for /v1/responses' previous_response_id
    install_error_handlers(app)
    # outermost last: metrics see the expert header that tracing adds
    app.add_middleware(CancelOnDisconnect)  # innermost: a client gone cancels the handler
    app.add_middleware(JsonBodyCheck)  # unencodable text, non-finite numbers: 422 by field
    app.add_middleware(BodySizeLimit, limit=config.server.limits.max_body_bytes)
    app.add_middleware(
        tracing.TraceMiddleware, store=app.state.traces, tracer=tracer, on_finish=settle
    )
    if config.observe.metrics:
        app.add_middleware(MetricsMiddleware, metrics=metrics)
    cors = config.server.cors
    if cors.allow_origins:  # inside the host guard: preflights and errors get the headers too
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cors.allow_origins,
            allow_methods=cors.allow_methods,
            allow_headers=cors.allow_headers,
            expose_headers=["x-corral-trace-id", "x-corral-expert", "x-corral-ignored"],
        )
    app.add_middleware(HostGuard, server=config.server)  # outermost: before any work
    app.include_router(routes_models.api)
    for family in FAMILIES:  # each family's routes, imported here (not at corral's import)
        for module in family.routes:
            app.include_router(importlib.import_module(module).api)
    app.include_router(routes_observe.api)

    @app.get(
        "/metrics",
        tags=["health"],
        include_in_schema=config.observe.metrics,
        response_class=PlainTextResponse,
        responses={**ERROR_RESPONSES, 200: {"content": {"text/plain": {}}}},
    )
    async def prometheus_metrics(request: Request) -> Response:
        """Prometheus text exposition of corral's metrics (needs an API key if keys are set)."""
        if not config.observe.metrics:
            raise HTTPException(404, "metrics are off (observe.metrics: false)")
        request.app.state.api_keys.check(request, limited=False)
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    app.mount("/dashboard", StaticFiles(directory=_DASHBOARD), name="dashboard")

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        """The dashboard: static files that read /v1/experts, /v1/traces and /v1/usage."""
        return FileResponse(_DASHBOARD / "index.html", headers=_DASHBOARD_HEADERS)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process is up and serving HTTP."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz(request: Request) -> JSONResponse:
        """Readiness: 200 once pre-warm is done and no configured expert is unavailable
        (``server.readiness: any``: once one expert is ready); lists which are not, and why."""
        rt: ExpertHost = request.app.state.runtime
        status = {h.name: h.status() for h in rt.handles.values()}
        unavailable = {name: why for name, (state, why) in status.items() if state == "unavailable"}
        warming = request.app.state.loading is not None and not request.app.state.loading.done()
        settled = rt.ready and not warming  # routes embedded and the LLM timed too
        if config.server.readiness == "any":
            ready = settled and any(state == "ready" for state, _ in status.values())
        else:
            ready = settled and not unavailable
        body = {
            "ready": ready,
            "loading": not settled,
            "experts": {name: state for name, (state, _) in status.items()},
            "unavailable": unavailable,
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    return app


def _cost_meter(config: Config, runtime: ExpertHost) -> CostMeter:
    """Prices from the config; the counterfactual is priced on the default chat expert."""
    try:
        default_llm: str | None = runtime.find(Task.CHAT, None).name
    except ModelNotFound:
        default_llm = None
    # upstreams (the catalog gave them a base_url) compute elsewhere: priced per token only
    remote = frozenset(h.name for h in runtime.handles.values() if h.resolved.base_url is not None)
    return CostMeter(config, default_llm=default_llm, remote=remote)


def _usage_store(config: Config) -> UsageStore | None:
    if not config.observe.usage:
        return None
    return UsageStore((config.observe.usage_db or default_usage_path()).expanduser())


async def _time_default_llm(runtime: ExpertHost, costs: CostMeter) -> None:
    """Measure the local default LLM's speed once it is loaded (see ``time_llm``)."""
    if costs.default_llm is None:
        return
    handle = runtime.handles[costs.default_llm]
    if handle.state != ExpertState.READY or not costs.price(handle.name, handle.device).per_second:
        return
    try:
        await time_llm(lambda params: runtime.chat(handle, params))
    except CorralError as exc:
        log.warning("could not time %s for cost estimates: %s", handle.name, exc.message)


def _most_used(usage: UsageStore | None) -> list[str]:
    """Experts by requests over the last week (pre-warm loads these first)."""
    if usage is None:
        return []
    rows = usage.report("expert", since=time.time() - 7 * 86400)
    return [r["expert"] for r in sorted(rows, key=lambda r: -r["requests"]) if r["expert"]]
