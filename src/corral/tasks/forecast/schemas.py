"""Bodies of ``POST /v1/forecast``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from corral.server.schemas import _Request
from corral.tasks.forecast.expert import ForecastInput


class ForecastRequest(_Request, ForecastInput):
    """The expert's input (``ForecastInput``) plus ``model`` and a deadline."""

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
