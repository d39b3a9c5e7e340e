"""``/v1/anomaly/...``: fit detectors of "normal", score rows, score streams, list, delete.

Fit and score go through the router like every task (metrics, traces, cost, fallbacks);
a detector is scored by the expert that fitted it unless the request names another of
the same backend. Stream windows live in ``app.state.anomaly_streams``.
"""

from __future__ import annotations

import asyncio
import math
from typing import Annotated

from fastapi import APIRouter, Path, Request

from corral.access import require_expert
from corral.artifacts import NAME_PATTERN, ArtifactInfo
from corral.config import LimitsConfig, Task
from corral.errors import InvalidRequest, ModelNotFound, PayloadTooLarge
from corral.fitted import FittedRoutes, Owner
from corral.input_limits import check_fit_work
from corral.ownership import qualify
from corral.runtime import ExpertHost
from corral.runtime.cancel import deadline
from corral.server.deps import RouterDep
from corral.server.fit_memory import anomaly_fit_bytes, check_fit_memory
from corral.server.schemas import ERROR_RESPONSES
from corral.tasks.anomaly.expert import (
    KIND,
    AnomalyFitInput,
    AnomalyScoreInput,
    FitResult,
    ScoreResult,
)
from corral.tasks.anomaly.schemas import (
    AnomalyDeleteResponse,
    AnomalyDetectorInfo,
    AnomalyFitRequest,
    AnomalyFitResponse,
    AnomalyListResponse,
    AnomalyScoreRequest,
    AnomalyScoreResponse,
    AnomalyStreamRequest,
    AnomalyStreamResponse,
)
from corral.tasks.anomaly.streams import StreamWindows

api = APIRouter(prefix="/v1/anomaly", tags=["anomaly"], responses=ERROR_RESPONSES)

Detector = Annotated[
    str, Path(pattern=NAME_PATTERN, description="Detector name: letters, digits, '.', '_', '-'.")
]


def _ref(detector: str, owner: str | None) -> str:
    return qualify(detector, owner, what="detectors")


def check_rows(
    data: list[list[float]] | None,
    series: list[float] | None,
    limits: LimitsConfig,
    *,
    window: int | None = None,
    param: str = "series",
) -> None:
    """413 naming the limit when rows, features, a series or a window are too big."""
    if data is not None:
        if len(data) > limits.max_rows:
            raise PayloadTooLarge(
                f"data has {len(data)} rows; server.limits.max_rows is {limits.max_rows}",
                param="data",
            )
        for i, row in enumerate(data):
            if len(row) > limits.max_features:
                raise PayloadTooLarge(
                    f"data[{i}] has {len(row)} values; server.limits.max_features is "
                    f"{limits.max_features}",
                    param=f"data[{i}]",
                )
    if series is not None:
        if len(series) > limits.max_series_length:
            raise PayloadTooLarge(
                f"{param} has {len(series)} values; server.limits.max_series_length is "
                f"{limits.max_series_length}",
                param=param,
            )
        if len(series) > limits.max_rows:
            raise PayloadTooLarge(
                f"{param} has {len(series)} values (as many windows); server.limits.max_rows "
                f"is {limits.max_rows}",
                param=param,
            )
    if window is not None and window > limits.max_features:
        raise PayloadTooLarge(
            f"window is {window}; server.limits.max_features is {limits.max_features}",
            param="window",
        )


def check_memory(
    data: list[list[float]] | None,
    series: list[float] | None,
    window: int | None,
    limits: LimitsConfig,
    what: str,
) -> None:
    """413 naming server.limits.max_fit_bytes when the rows (or windows) would not fit."""
    if data is None and (series is None or window is None):
        return
    rows, features = _fit_shape(data, series, window)
    param = "data" if data is not None else "series"
    check_fit_memory(anomaly_fit_bytes(rows, features), what, limits, param)


def _fit_shape(
    data: list[list[float]] | None, series: list[float] | None, window: int | None
) -> tuple[int, int]:
    """(rows, features) a fit sends: its rows, or a series' windows."""
    if data is not None:
        return len(data), max((len(r) for r in data), default=0)
    if series is not None and window is not None:
        return max(len(series) - window + 1, 0), window
    return 0, 0


def _fitting_expert(runtime: ExpertHost, info: ArtifactInfo) -> str:
    """The expert that fitted the detector, else another of its backend (config changed)."""
    backend, name = info.meta.get("backend"), str(info.meta.get("expert"))
    spec = runtime.config.model_named(name)
    if spec is not None and runtime.handles[spec.name].resolved.backend == backend:
        return spec.name
    for handle in runtime.handles.values():
        if handle.task == Task.ANOMALY and handle.resolved.backend == backend:
            return handle.name
    raise ModelNotFound(
        f"detector {info.name!r} was fitted by {backend} expert {name!r}, and no {backend} "
        "anomaly expert is configured now",
        param="model",
    )


async def _info(
    runtime: ExpertHost, detector: str, version: int | None, model: str | None
) -> ArtifactInfo:
    """The stored detector; a ``model`` the key may not use is a 403 before anything is read."""
    spec = runtime.config.model_named(model) if model else None
    if spec is not None:
        require_expert(spec.name)
    return await asyncio.to_thread(runtime.artifacts.info, KIND, detector, version)


@api.post("/{detector}/fit", response_model=AnomalyFitResponse)
async def fit(
    detector: Detector, body: AnomalyFitRequest, router: RouterDep, owner: Owner = None
) -> AnomalyFitResponse:
    """Fit a detector on normal rows (or a series' windows) and store it as a new version."""
    limits = router.runtime.config.server.limits
    check_rows(body.data, body.series, limits, window=body.window)
    check_memory(body.data, body.series, body.window, limits, "this fit")
    check_fit_work(*_fit_shape(body.data, body.series, body.window), body.options.epochs, limits)
    request = AnomalyFitInput(
        detector=_ref(detector, owner),
        data=body.data,
        series=body.series,
        window=body.window,
        contamination=body.contamination,
        threshold_quantile=body.threshold_quantile,
        options=body.options,
    )
    with deadline(body.timeout_s):
        handle, result = await router.serve(Task.ANOMALY, body.model, request)
    assert isinstance(result, FitResult)
    return AnomalyFitResponse(
        name=detector,
        version=result.version,
        expert=handle.name,
        backend=result.backend,
        algorithm=result.algorithm,
        n_rows=result.n_rows,
        n_features=result.n_features,
        window=result.window,
        threshold=result.threshold,
        threshold_quantile=result.threshold_quantile,
        fit_seconds=result.fit_seconds,
    )


async def _score(
    router: RouterDep, info: ArtifactInfo, model: str | None, **rows: object
) -> tuple[str, ScoreResult]:
    request = AnomalyScoreInput.model_validate(
        {"detector": info.ref, "version": info.version, **rows}
    )
    handle, result = await router.serve(
        Task.ANOMALY, model or _fitting_expert(router.runtime, info), request
    )
    assert isinstance(result, ScoreResult)
    return handle.name, result


@api.post("/{detector}/score", response_model=AnomalyScoreResponse)
async def score(
    detector: Detector, body: AnomalyScoreRequest, router: RouterDep, owner: Owner = None
) -> AnomalyScoreResponse:
    """Score rows (or a series' windows); flags those above the detector's threshold."""
    check_rows(body.data, body.series, router.runtime.config.server.limits)
    info = await _info(router.runtime, _ref(detector, owner), body.version, body.model)
    window = info.meta.get("window")
    limits = router.runtime.config.server.limits
    check_memory(body.data, body.series, int(window) if window else None, limits, "scoring")
    expert, result = await _score(router, info, body.model, data=body.data, series=body.series)
    return AnomalyScoreResponse(
        name=info.name,
        version=result.version,
        expert=expert,
        window=result.window,
        threshold=result.threshold,
        scores=result.scores,
        is_anomaly=result.is_anomaly,
    )


@api.post("/{detector}/stream", response_model=AnomalyStreamResponse)
async def stream(
    detector: Detector,
    body: AnomalyStreamRequest,
    router: RouterDep,
    http: Request,
    owner: Owner = None,
) -> AnomalyStreamResponse:
    """Feed a stream's new values; each value that completes a window gets its score."""
    check_rows(None, body.values, router.runtime.config.server.limits, param="values")
    for i, value in enumerate(body.values):  # before they enter the stream's window
        if not math.isfinite(value):
            raise InvalidRequest(
                f"values[{i}] is {value}; values must be finite", param=f"values[{i}]"
            )
    info = await _info(router.runtime, _ref(detector, owner), body.version, body.model)
    window = info.meta.get("window")
    if window is None:
        raise InvalidRequest(
            f"detector {detector!r} was fitted on rows; streams need one fitted on a series "
            "with a window",
            param="detector",
        )
    streams: StreamWindows = http.app.state.anomaly_streams
    segment, waiting, seen = streams.push(info.ref, body.stream_id, body.values, int(window))
    scores: list[float | None] = [None] * waiting
    flags: list[bool | None] = [None] * waiting
    threshold = float(info.meta["threshold"])
    if waiting < len(body.values):
        _, result = await _score(router, info, body.model, series=segment)
        scores += result.scores
        flags += result.is_anomaly
        threshold = result.threshold
    return AnomalyStreamResponse(
        name=info.name,
        version=info.version,
        stream_id=body.stream_id,
        window=int(window),
        seen=seen,
        threshold=threshold,
        scores=scores,
        is_anomaly=flags,
    )


def _described(infos: list[ArtifactInfo]) -> AnomalyDetectorInfo:
    latest = infos[-1]
    meta = latest.meta
    return AnomalyDetectorInfo(
        name=latest.name,
        owner=latest.owner,
        versions=[i.version for i in infos],
        latest=latest.version,
        expert=str(meta.get("expert")),
        backend=str(meta.get("backend")),
        algorithm=str(meta.get("algorithm")),
        n_features=int(meta.get("n_features", 0)),
        window=meta.get("window"),
        threshold=float(meta.get("threshold", 0.0)),
        created=latest.created,
    )


def _forget_streams(http: Request, ref: str) -> None:
    """A deleted detector's stream windows go with it."""
    streams: StreamWindows = http.app.state.anomaly_streams
    streams.forget(ref)


FittedRoutes(
    kind=KIND,
    what="detectors",
    info=AnomalyDetectorInfo,
    describe=_described,
    listing=AnomalyListResponse,
    deleted=AnomalyDeleteResponse,
    on_delete=_forget_streams,
).mount(api)
