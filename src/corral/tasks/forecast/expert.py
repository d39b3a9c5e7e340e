"""Probabilistic time-series forecasting: a mean and chosen quantiles per series.

* ``fracast``: Fracast-0, an 85k-parameter zero-shot model (torch) whose weights ship in
  the ``fracast`` wheel. It predicts nine quantiles (0.1 ... 0.9) in 48-step blocks; other
  levels inside that range are interpolated linearly, levels outside it are refused (422).
  It has no mean, so ``mean`` is its median.
* ``chronos``: any Chronos pipeline from a local directory (Chronos T5, Chronos-Bolt,
  Chronos-2; ``chronos-forecasting``'s ``BaseChronosPipeline`` picks the class from the
  config). T5 Chronos samples its paths, so each call is seeded (``options.seed``, 0)
  inside a forked RNG: the same request gets the same answer.
* ``statsforecast``: AutoETS, AutoTheta or AutoARIMA fitted per series (no weights;
  AutoARIMA searches orders, and takes seconds on a few hundred values). Quantiles come
  from its normal prediction intervals: quantile q is the lower bound of the
  ``100 * (1 - 2q)`` % interval (upper bound of ``100 * (2q - 1)`` % above the median).

Each item is one series; a batch may mix requests with different horizons, quantiles and
season lengths, so ``forward`` groups items that one library call can serve together.
Every series is divided by its largest absolute value before the model sees it and the
forecast multiplied back: both models are scale-equivariant, and this keeps values near
float32's or ETS's overflow (1e300) from breaking them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, Field

from corral.config import Task
from corral.errors import InvalidRequest
from corral.experts._memory import torch_bytes
from corral.experts._numeric import finite
from corral.experts._torch import torch_threads
from corral.experts.base import Expert, require
from corral.experts.options import ChronosOptions, FracastOptions, StatsForecastOptions
from corral.runtime.cancel import checkpoint

__all__ = [
    "ChronosForecaster",
    "ForecastInput",
    "FracastForecaster",
    "SeriesForecast",
    "StatsForecaster",
]

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


@dataclass(frozen=True)
class SeriesForecast:
    mean: list[float]
    quantiles: dict[str, list[float]]  # keyed by str(level): "0.1"


@dataclass(frozen=True)
class _Item:
    """One series of a request, with what that request asked for."""

    index: int  # position in its request, for error messages
    values: np.ndarray  # scaled into [-1, 1]
    scale: float
    horizon: int
    quantiles: tuple[float, ...]
    season_length: int


_Output = SeriesForecast | InvalidRequest


class _ForecastExpert(Expert[ForecastInput, _Item, _Output, list[SeriesForecast]]):
    task = Task.FORECAST
    input_model = ForecastInput

    def min_length(self, season_length: int) -> int:
        """Fewest observations a series needs for this backend."""
        return 2

    def check_quantiles(self, quantiles: list[float]) -> None:
        """Raise InvalidRequest for levels this backend cannot give."""

    def prepare(self, request: ForecastInput) -> list[_Item]:
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
            items.append(_Item(i, values / scale, scale, request.horizon, quantiles, season))
        return items

    def finish(self, request: ForecastInput, outputs: list[_Output]) -> list[SeriesForecast]:
        for output in outputs:
            if isinstance(output, InvalidRequest):
                raise output
        return [o for o in outputs if isinstance(o, SeriesForecast)]


def _result(item: _Item, mean: np.ndarray, levels: dict[float, np.ndarray]) -> _Output:
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


def _groups(items: list[_Item], key: Any) -> Iterable[list[int]]:
    grouped: dict[Any, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        grouped[key(item)].append(i)
    return grouped.values()


def _interpolate(paths: np.ndarray, levels: np.ndarray, q: float) -> np.ndarray:
    """Quantile ``q`` of every step, linear between the two model levels around it."""
    j = int(np.clip(np.searchsorted(levels, q, side="right") - 1, 0, len(levels) - 2))
    w = (q - levels[j]) / (levels[j + 1] - levels[j])
    return np.asarray(paths[:, j] * (1 - w) + paths[:, j + 1] * w)


class FracastForecaster(_ForecastExpert):
    """Forecast time series (mean and quantiles) with the Fracast-0 zero-shot model."""

    options_model = FracastOptions
    backend = "fracast"

    def load(self) -> None:
        fracast = require("fracast", "forecast")
        self.threads = int(self.context.options.get("threads", 1))
        self.rows_per_call = int(self.context.options.get("rows_per_call", 16))
        self.model = fracast.FracastModel.from_pretrained(
            str(self.context.path),
            weights=self.context.options.get("weights", "fp32"),
            device=self.context.device,
        )
        self.levels = np.asarray(self.model.quantiles, dtype=np.float64)
        predict = self.model._predict_rows  # one 48-step block; fracast has no other hook

        def block_then_checkpoint(rows: np.ndarray) -> np.ndarray:
            checkpoint()  # a safe point between blocks of a long horizon
            return predict(rows)

        self.model._predict_rows = block_then_checkpoint

    def unload(self) -> None:
        del self.model

    def resident_bytes(self) -> int | None:
        return torch_bytes(self.model.core, self.model.head)

    def min_length(self, season_length: int) -> int:
        return 8  # fracast refuses fewer finite observations

    def check_quantiles(self, quantiles: list[float]) -> None:
        low, high = float(self.levels[0]), float(self.levels[-1])
        for i, q in enumerate(quantiles):
            if not low <= q <= high:
                raise InvalidRequest(
                    f"quantiles[{i}] is {q}; fracast forecasts levels {low} to {high} only",
                    param=f"quantiles[{i}]",
                )

    def forward(self, items: list[_Item]) -> list[_Output]:
        """One batched call per count of 48-step blocks: a short horizon never pays for
        another request's long one. Shorter series are left-padded with NaN, which
        fracast treats as unobserved, exactly as it pads a short context itself. A call
        takes at most ``options.rows_per_call`` series (16): past that fracast's time per
        series grows (0.037 s at 8, 0.055 s at 32, 0.10 s at 64 here)."""
        outputs: list[_Output | None] = [None] * len(items)
        block = self.model.horizon
        for blocks in _groups(items, lambda it: -(-it.horizon // block)):
            for start in range(0, len(blocks), self.rows_per_call):
                self._forecast_rows(items, blocks[start : start + self.rows_per_call], outputs)
        return [o for o in outputs if o is not None]

    def _forecast_rows(
        self, items: list[_Item], group: list[int], outputs: list[_Output | None]
    ) -> None:
        """One fracast call over the series ``group`` indexes; results go into ``outputs``."""
        width = min(max(len(items[i].values) for i in group), self.model.context_length)
        rows = np.full((len(group), width), np.nan)
        for row, i in enumerate(group):
            tail = items[i].values[-width:]
            rows[row, width - len(tail) :] = tail
        horizon = max(items[i].horizon for i in group)
        with np.errstate(all="ignore"), torch_threads(self.threads):
            forecast = np.sort(self.model.forecast_batch(rows, horizon=horizon), axis=-1)
        for row, i in enumerate(group):
            paths = forecast[row].astype(np.float64)  # [horizon, levels]
            wanted = (*items[i].quantiles, 0.5)
            levels = {q: _interpolate(paths, self.levels, q) for q in wanted}
            outputs[i] = _result(items[i], levels[0.5], levels)


class ChronosForecaster(_ForecastExpert):
    """Forecast time series (mean and quantiles) with a Chronos model (T5, Bolt or Chronos-2)."""

    options_model = ChronosOptions
    backend = "chronos"

    def load(self) -> None:
        require("chronos", "chronos")
        from chronos import BaseChronosPipeline

        self.pipeline = BaseChronosPipeline.from_pretrained(
            str(self.context.path), device_map=self.context.device, dtype="float32"
        )
        options = self.context.options
        trained = getattr(getattr(self.pipeline.model, "config", None), "context_length", 512)
        self.context_length = int(options.get("context_length", trained))
        self.seed = int(options.get("seed", 0))

    def unload(self) -> None:
        del self.pipeline

    def resident_bytes(self) -> int | None:
        return torch_bytes(self.pipeline.model)

    def forward(self, items: list[_Item]) -> list[_Output]:
        """One pipeline call per horizon, over the last ``context_length`` values of each
        series (Chronos left-pads shorter ones with NaN itself)."""
        import torch

        outputs: list[_Output | None] = [None] * len(items)
        for group in _groups(items, lambda it: it.horizon):
            checkpoint()  # between horizons' calls: stop once every caller has gone
            levels = sorted({q for i in group for q in items[i].quantiles} | {0.5})
            contexts = [
                torch.tensor(items[i].values[-self.context_length :], dtype=torch.float32)
                for i in group
            ]
            with torch.random.fork_rng(devices=[]), torch.inference_mode():
                torch.manual_seed(self.seed)
                quantiles, mean = self.pipeline.predict_quantiles(
                    contexts, prediction_length=items[group[0]].horizon, quantile_levels=levels
                )
            bands, means = _stacked(quantiles), _stacked(mean)
            for row, i in enumerate(group):
                by_level = {q: bands[row, :, j] for j, q in enumerate(levels)}
                outputs[i] = _result(items[i], means[row], by_level)
        return [o for o in outputs if o is not None]


def _stacked(values: Any) -> np.ndarray:
    """Chronos and Bolt return one batch tensor; Chronos-2 a list of per-series tensors
    with a leading variate axis (one variate here)."""
    if isinstance(values, list):
        return np.stack([v[0].float().numpy() for v in values]).astype(np.float64)
    return np.asarray(values.float().numpy(), dtype=np.float64)


class StatsForecaster(_ForecastExpert):
    """Forecast time series (mean and quantiles) with statistical models (AutoETS, AutoTheta,
    AutoARIMA)."""

    options_model = StatsForecastOptions
    backend = "statsforecast"
    uses_torch = False
    MODELS = ("AutoETS", "AutoTheta", "AutoARIMA")

    def load(self) -> None:
        require("statsforecast", "forecast")
        from statsforecast import models

        spec = self.context.spec
        implied = spec.model.removeprefix("statsforecast/")
        name = self.context.options.get("model") or (
            implied if implied in self.MODELS else "AutoETS"
        )
        if name not in self.MODELS:
            raise ValueError(f"options.model must be one of {', '.join(self.MODELS)}: {name!r}")
        self.name: str = name
        # AutoTheta's fit grows with the square of the length (25 s at 16k values here),
        # fit on the most recent values only, as fracast reads its last 2048
        self.context_length = int(self.context.options.get("context_length", 2048))
        self.model_class = getattr(models, name)
        # compiles the numba kernels now rather than on the first request
        warm = np.sin(np.arange(48) * math.pi / 6) + 2.0
        self._run([warm], season_length=12, horizon=2, levels=[80.0])

    def unload(self) -> None:
        del self.model_class

    def min_length(self, season_length: int) -> int:
        # ETS refuses "tiny datasets" below 7; a season is only estimable from two of them
        return max(7, 2 * season_length) if season_length > 1 else 7

    def _run(
        self, series: list[np.ndarray], *, season_length: int, horizon: int, levels: list[float]
    ) -> Any:
        """One StatsForecast call over many series (a long frame keyed by unique_id)."""
        import pandas as pd
        from statsforecast import StatsForecast

        frame = pd.DataFrame(
            {
                "unique_id": np.repeat(np.arange(len(series)), [len(s) for s in series]),
                "ds": np.concatenate([np.arange(len(s)) for s in series]),
                "y": np.concatenate(series),
            }
        )
        engine = StatsForecast(
            models=[self.model_class(season_length=season_length)], freq=1, n_jobs=1
        )
        with np.errstate(all="ignore"):
            # typed list[int], but fractional levels work (and name columns "lo-33.3")
            out = engine.forecast(df=frame, h=horizon, level=levels or None)  # type: ignore[arg-type]
        return out.sort_values(["unique_id", "ds"])

    def forward(self, items: list[_Item]) -> list[_Output]:
        """One call per season length; a failed call is retried series by series so one
        unfittable series gets its own 422 and the rest of the batch still answers."""
        outputs: list[_Output | None] = [None] * len(items)
        for group in _groups(items, lambda it: it.season_length):
            try:
                for i, result in zip(group, self._forecast([items[i] for i in group]), strict=True):
                    outputs[i] = result
            except Exception:
                for i in group:
                    try:
                        outputs[i] = self._forecast([items[i]])[0]
                    except Exception as exc:
                        outputs[i] = InvalidRequest(
                            f"series[{items[i].index}]: {self.name} cannot fit it "
                            f"({type(exc).__name__}: {exc})",
                            param=f"series[{items[i].index}]",
                        )
        return [o for o in outputs if o is not None]

    def _forecast(self, items: list[_Item]) -> list[_Output]:
        horizon = max(item.horizon for item in items)
        level_of = {
            q: level
            for item in items
            for q in item.quantiles
            if (level := round(100 * abs(1 - 2 * q), 9)) > 0  # else: the median, the mean
        }
        wanted = set(level_of)
        levels = sorted(set(level_of.values()))
        out = self._run(
            [item.values[-max(self.context_length, 2 * item.season_length) :] for item in items],
            season_length=items[0].season_length,
            horizon=horizon,
            levels=levels,
        )

        def column(name: str) -> np.ndarray:
            return out[name].to_numpy(dtype=np.float64).reshape(len(items), horizon)

        mean = column(self.name)
        bands = {
            q: column(f"{self.name}-{'lo' if q < 0.5 else 'hi'}-{level_of[q]}") for q in wanted
        }
        results = []
        for row, item in enumerate(items):
            levels_row = {q: mean[row] for q in item.quantiles}  # those at the median
            levels_row.update({q: band[row] for q, band in bands.items()})
            results.append(_result(item, mean[row], levels_row))
        return results
