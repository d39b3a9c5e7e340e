"""Bodies of POST /v1/forecast."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from corral.server.schemas import _Request


# --- forecast -------------------------------------------------------------------------
class ForecastRequest(_Request):
    series: list[list[float]] = Field(
        min_length=1, description="One or more series, oldest value first, evenly spaced."
    )
    horizon: int = Field(ge=1, description="Steps to forecast past the end of each series.")
    quantiles: list[Annotated[float, Field(gt=0, lt=1)]] = Field(
        default_factory=lambda: [0.1, 0.5, 0.9], max_length=99, description="Levels in (0, 1)."
    )
    season_length: int | None = Field(
        None, ge=1, description="Steps per season (12 for monthly data); omitted: the expert's."
    )
    timeout_s: float | None = Field(
        None,
        gt=0,
        le=86_400,
        description="Seconds this request may take; then a 504 and its work stops.",
    )


class ForecastData(BaseModel):
    index: int
    mean: list[float] = Field(description="Point forecast, `horizon` steps.")
    quantiles: dict[str, list[float]] = Field(
        description='Each requested level, keyed as sent ("0.1"), `horizon` steps.'
    )
    expert: str | None = Field(None, description='model "auto": the expert chosen for the series.')
    backtest_error: float | None = Field(
        None, description='model "auto": the chosen expert\'s backtest error (MASE) on the tail.'
    )


class ForecastResponse(BaseModel):
    object: Literal["list"] = "list"
    model: str
    data: list[ForecastData]
