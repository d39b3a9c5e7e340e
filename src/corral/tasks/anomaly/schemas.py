"""Request and response bodies of ``/v1/anomaly/...``.

Rows and series carry no size bound here: ``server.limits`` (``max_rows``,
``max_features``, ``max_series_length``) bound them in the route with a 413 naming the
limit, as every other task does.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from corral.tasks.anomaly.expert import FitOptions

__all__ = [
    "AnomalyDeleteResponse",
    "AnomalyDetectorInfo",
    "AnomalyFitRequest",
    "AnomalyFitResponse",
    "AnomalyListResponse",
    "AnomalyScoreRequest",
    "AnomalyScoreResponse",
    "AnomalyStreamRequest",
    "AnomalyStreamResponse",
]

STREAM_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


class _Rows(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: str | None = Field(
        None, description="Anomaly expert name; omitted: the default (fit) or the fitting one."
    )
    data: list[list[float]] | None = Field(
        None, min_length=1, description="Rows of numeric features, all the same length."
    )
    series: list[float] | None = Field(
        None, min_length=1, description="One series, oldest first, cut into sliding windows."
    )

    @model_validator(mode="after")
    def _one_input(self) -> _Rows:
        if (self.data is None) == (self.series is None):
            raise ValueError("give exactly one of `data` (rows) or `series` (with a window)")
        return self


class AnomalyFitRequest(_Rows):
    window: int | None = Field(None, ge=2, description="Window length; required with `series`.")
    contamination: float | None = Field(
        None, gt=0, lt=0.5, description="Expected share of anomalies (default: the expert's)."
    )
    threshold_quantile: float | None = Field(
        None, gt=0, lt=1, description="Quantile of fit scores used as threshold."
    )
    options: FitOptions = FitOptions()
    timeout_s: float | None = Field(
        None,
        gt=0,
        le=86_400,
        description="Seconds this request may take; then a 504 and its work stops.",
    )


class AnomalyFitResponse(BaseModel):
    object: str = "anomaly.detector"
    name: str
    version: int
    expert: str
    backend: str
    algorithm: str
    n_rows: int = Field(description="Rows (or windows) fitted on.")
    n_features: int
    window: int | None
    threshold: float
    threshold_quantile: float
    fit_seconds: float


class AnomalyScoreRequest(_Rows):
    version: int | None = Field(None, ge=1, description="Detector version; omitted: the newest.")


class AnomalyScoreResponse(BaseModel):
    object: str = "anomaly.scores"
    name: str
    version: int
    expert: str
    window: int | None = Field(description="With a series: score i covers values i..i+window-1.")
    threshold: float
    scores: list[float]
    is_anomaly: list[bool]


class AnomalyStreamRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: str | None = None
    stream_id: str = Field(pattern=STREAM_ID_PATTERN, description="Caller's name for the stream.")
    values: list[float] = Field(min_length=1, description="New values, oldest first.")
    version: int | None = Field(None, ge=1, description="Detector version; omitted: the newest.")


class AnomalyStreamResponse(BaseModel):
    object: str = "anomaly.stream"
    name: str
    version: int
    stream_id: str
    window: int
    seen: int = Field(description="Values this stream has received so far.")
    threshold: float
    scores: list[float | None] = Field(
        description="Per value sent: the score of the window it completes (null until full)."
    )
    is_anomaly: list[bool | None]


class AnomalyDetectorInfo(BaseModel):
    name: str
    owner: str | None = Field(None, description="The API key that fitted it (with keys).")
    versions: list[int]
    latest: int
    expert: str
    backend: str
    algorithm: str
    n_features: int
    window: int | None
    threshold: float
    created: float = Field(description="Unix seconds the latest version was stored.")


class AnomalyListResponse(BaseModel):
    object: str = "list"
    data: list[AnomalyDetectorInfo]


class AnomalyDeleteResponse(BaseModel):
    object: str = "anomaly.deleted"
    name: str
    deleted: int = Field(description="Versions deleted.")
