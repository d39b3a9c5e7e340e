"""statsforecast's AutoETS, AutoTheta or AutoARIMA fitted per series (no weights; AutoARIMA
searches orders, and takes seconds on a few hundred values). Quantiles come from its
normal prediction intervals: quantile q is the lower bound of the ``100 * (1 - 2q)`` %
interval (upper bound of ``100 * (2q - 1)`` % above the median)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from corral.errors import InvalidRequest
from corral.experts.base import require
from corral.experts.options import StatsForecastOptions
from corral.tasks.forecast.expert import (
    ForecastExpert,
    ForecastItem,
    ForecastOutput,
    grouped,
    series_result,
)


class StatsForecaster(ForecastExpert):
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

    def forward(self, items: list[ForecastItem]) -> list[ForecastOutput]:
        """One call per season length; a failed call is retried series by series so one
        unfittable series gets its own 422 and the rest of the batch still answers."""
        outputs: list[ForecastOutput | None] = [None] * len(items)
        for group in grouped(items, lambda it: it.season_length):
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

    def _forecast(self, items: list[ForecastItem]) -> list[ForecastOutput]:
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
            results.append(series_result(item, mean[row], levels_row))
        return results
