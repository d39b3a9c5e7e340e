"""Anomaly detection: fit what "normal" rows look like over HTTP, then score rows and streams."""

from __future__ import annotations

from corral.config import Task
from corral.tasks.family import Backend, TaskFamily

FAMILY = TaskFamily(
    name="anomaly",
    backends=(
        Backend(
            Task.ANOMALY,
            "autoencoder",
            "corral.tasks.anomaly.autoencoder:AutoencoderDetector",
            ("torch",),
            "anomaly",
            weightless=True,
        ),
        Backend(
            Task.ANOMALY,
            "pyod",
            "corral.tasks.anomaly.pyod_detectors:PyodDetector",
            ("pyod",),
            "anomaly",
            weightless=True,
        ),
    ),
    routes=("corral.tasks.anomaly.api",),
    tools=frozenset({Task.ANOMALY}),
)
