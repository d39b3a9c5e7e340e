"""Probabilistic time-series forecasting: Fracast-0, statsforecast, Chronos."""

from __future__ import annotations

from corral.config import Task
from corral.tasks.family import Backend, TaskFamily

FAMILY = TaskFamily(
    name="forecast",
    backends=(
        Backend(
            Task.FORECAST,
            "fracast",
            "corral.tasks.forecast.fracast:FracastForecaster",
            ("fracast",),
            "forecast",
        ),
        Backend(
            Task.FORECAST,
            "statsforecast",
            "corral.tasks.forecast.stats:StatsForecaster",
            ("statsforecast",),
            "forecast",
            weightless=True,
        ),
        Backend(
            Task.FORECAST,
            "chronos",
            "corral.tasks.forecast.chronos:ChronosForecaster",
            ("torch", "chronos"),
            "chronos",
        ),
    ),
    routes=("corral.tasks.forecast.api",),
    tools=frozenset({Task.FORECAST}),
)
