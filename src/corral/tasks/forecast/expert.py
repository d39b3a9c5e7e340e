"""Probabilistic time-series forecasting: a mean and chosen quantiles per series, and what
the backends share (``fracast.py``, ``chronos.py``, ``stats.py``).

Each item is one series; a batch may mix requests with different horizons, quantiles and
season lengths, so ``forward`` groups items that one library call can serve together.
Every series is divided by its largest absolute value before the model sees it and the
forecast multiplied back: both models are scale-equivariant, and this keeps values near
float32's or ETS's overflow (1e300) from breaking them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, Field

from corral.config import LimitsConfig, Task
from corral.errors import InvalidRequest
from corral.experts._numeric import finite
from corral.experts.base import Expert
from corral.experts.operation import Operation
from corral.input_limits import check_series

__all__ = ["FORECAST", "ForecastExpert", "ForecastInput", "SeriesForecast"]

Quantile = Annotated[float, Field(gt=0, lt=1)]


class ForecastInput(BaseModel):
    series: list[list[float]] = Field(
        min_length=1, description="One or more series, oldest value first, evenly spaced."
    )
    horizon: int = Field(ge=1, description="How many steps to forecast past each series' end.")
    quantiles: list[Quantile] = Field(
        default_factory=lambda: [0.1, 0.5, 0.9], max_length=99, description="Levels in (0, 1)."
    )
    season_length: int | None = Field(
        None, ge=1, description="Steps per season (12 for monthly data); omitted: the expert's."
    )

    def check_limits(self, limits: LimitsConfig) -> None:
        """``server.limits`` on this input (413 naming the limit), as built over HTTP
        or by a tool call."""
        check_series(self.series, self.horizon, limits)


@dataclass(frozen=True)
class SeriesForecast:
    mean: list[float]
    quantiles: dict[str, list[float]]  # keyed by str(level): "0.1"


@dataclass(frozen=True)
class ForecastItem:
    """One series of a request, with what that request asked for."""

    index: int  # position in its request, for error messages
    values: np.ndarray  # scaled into [-1, 1]
    scale: float
    horizon: int
    quantiles: tuple[float, ...]
    season_length: int


ForecastOutput = SeriesForecast | InvalidRequest


FORECAST = Operation(Task.FORECAST, ForecastInput, list[SeriesForecast])


class ForecastExpert(Expert[ForecastInput, ForecastItem, ForecastOutput, list[SeriesForecast]]):
    task = Task.FORECAST
    operation = FORECAST

    def min_length(self, season_length: int) -> int:
        """Fewest observations a series needs for this backend."""
        return 2

    def check_quantiles(self, quantiles: list[float]) -> None:
        """Raise InvalidRequest for levels this backend cannot give."""

    def prepare(self, request: ForecastInput) -> list[ForecastItem]:
        """Validate here, on the caller's own request: a bad series must not fail a batch."""
        self.check_quantiles(request.quantiles)
        season = request.season_length or int(self.context.options.get("season_length", 1))
        need = self.min_length(season)
        items = []
        for i, series in enumerate(request.series):
            values = finite(np.asarray(series, dtype=np.float64), f"series[{i}]")
            if len(values) < need:
                raise InvalidRequest(
                    f"series[{i}] has {len(values)} values; {self.backend} needs at least {need}"
                    + (f" (two seasons of {season})" if need == 2 * season else ""),
                    param=f"series[{i}]",
                )
            scale = float(np.max(np.abs(values))) or 1.0
            quantiles = tuple(dict.fromkeys(request.quantiles))
            items.append(ForecastItem(i, values / scale, scale, request.horizon, quantiles, season))
        return items

    def finish(self, request: ForecastInput, outputs: list[ForecastOutput]) -> list[SeriesForecast]:
        for output in outputs:
            if isinstance(output, InvalidRequest):
                raise output
        return [o for o in outputs if isinstance(o, SeriesForecast)]


def series_result(
    item: ForecastItem, mean: np.ndarray, levels: dict[float, np.ndarray]
) -> ForecastOutput:
    """Scale back; an overflowing result is the caller's data, not a server fault."""
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is checked just below
        mean = mean[: item.horizon] * item.scale
        bands = {str(q): levels[q][: item.horizon] * item.scale for q in item.quantiles}
    if not all(np.isfinite(v).all() for v in [mean, *bands.values()]):
        return InvalidRequest(
            f"series[{item.index}]: the forecast is not finite (values too large?)",
            param=f"series[{item.index}]",
        )
    return SeriesForecast(mean.tolist(), {k: v.tolist() for k, v in bands.items()})


def grouped(items: list[ForecastItem], key: Any) -> Iterable[list[int]]:
    by_key: dict[Any, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        by_key[key(item)].append(i)
    return by_key.values()


