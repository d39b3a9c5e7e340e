"""Any Chronos pipeline from a local directory (Chronos T5, Chronos-Bolt, Chronos-2;
``chronos-forecasting``'s ``BaseChronosPipeline`` picks the class from the config). T5
Chronos samples its paths, so each call is seeded (``options.seed``, 0) inside a forked
RNG: the same request gets the same answer."""

from __future__ import annotations

from typing import Any

import numpy as np

from corral.experts._memory import torch_bytes
from corral.experts.base import require
from corral.experts.options import ChronosOptions
from corral.runtime.cancel import checkpoint
from corral.tasks.forecast.expert import (
    ForecastExpert,
    ForecastItem,
    ForecastOutput,
    grouped,
    series_result,
)


class ChronosForecaster(ForecastExpert):
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

    def forward(self, items: list[ForecastItem]) -> list[ForecastOutput]:
        """One pipeline call per horizon, over the last ``context_length`` values of each
        series (Chronos left-pads shorter ones with NaN itself)."""
        import torch

        outputs: list[ForecastOutput | None] = [None] * len(items)
        for group in grouped(items, lambda it: it.horizon):
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
                outputs[i] = series_result(items[i], means[row], by_level)
        return [o for o in outputs if o is not None]


def _stacked(values: Any) -> np.ndarray:
    """Chronos and Bolt return one batch tensor; Chronos-2 a list of per-series tensors
    with a leading variate axis (one variate here)."""
    if isinstance(values, list):
        return np.stack([v[0].float().numpy() for v in values]).astype(np.float64)
    return np.asarray(values.float().numpy(), dtype=np.float64)
