"""The forecast ``auto`` rule's measurement: a rolling-origin backtest on a series' tail.

For each series, ``folds`` origins one backtest horizon apart are cut from its last
``max_context`` values; every candidate forecasts each cut, and its error is the mean
absolute error over the held-out steps, scaled by the in-sample mean absolute change of
the series (MASE: below 1 beats the naive "same as last" forecast). The cheapest
candidate (first in order) whose error is within ``tolerance`` of the best one wins.
A candidate that cannot forecast a cut (too short for it, a quantile it lacks) is not
measured there; a series too short to cut, or a backtest past ``max_seconds``, goes to
the first candidate.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from corral.config_auto import ForecastAuto
from corral.errors import CorralError
from corral.runtime import ExpertHandle
from corral.tasks.forecast.expert import ForecastInput

if TYPE_CHECKING:
    from corral.routing.dispatch import Dispatcher

__all__ = ["BacktestChoice", "backtest_choice", "mase"]

_MIN_TRAIN = 8  # values a cut keeps to fit on, at least


@dataclass
class BacktestChoice:
    """Per series: the expert chosen, its backtest error, and every candidate's error."""

    experts: list[ExpertHandle]
    errors: list[float | None]
    scores: list[dict[str, float]] = field(default_factory=list)
    reason: str = ""


def mase(truth: np.ndarray, forecast: np.ndarray, history: np.ndarray) -> float:
    """Mean absolute error scaled by the history's mean absolute one-step change."""
    scale = float(np.mean(np.abs(np.diff(history)))) if len(history) > 1 else 0.0
    error = float(np.mean(np.abs(truth - forecast)))
    return error / scale if scale > 0 else error


def _cuts(series: list[float], horizon: int, rule: ForecastAuto) -> tuple[int, list[int]]:
    """(backtest horizon, origins) for one series; no origins if it is too short."""
    n = min(len(series), rule.max_context)
    step = min(horizon, max(1, (n - _MIN_TRAIN) // (rule.folds + 1)))
    start = len(series) - rule.folds * step
    if start - (len(series) - n) < _MIN_TRAIN:
        return step, []
    return step, [start + f * step for f in range(rule.folds)]


async def _measure(
    dispatch: Dispatcher,
    handle: ExpertHandle,
    series: list[float],
    request: ForecastInput,
    rule: ForecastAuto,
) -> float | None:
    step, origins = _cuts(series, request.horizon, rule)
    if not origins:
        return None
    floor = max(0, len(series) - rule.max_context)
    cuts = [series[floor:o] for o in origins]
    backtest = ForecastInput(
        series=cuts, horizon=step, quantiles=[0.5], season_length=request.season_length
    )
    try:
        _, forecasts = await dispatch.submit(handle, backtest)
    except CorralError:  # this candidate cannot forecast these cuts: not measured
        return None
    values = np.asarray(series, dtype=np.float64)
    errors = [
        mase(values[o : o + step], np.asarray(f.mean, dtype=np.float64), values[floor:o])
        for o, f in zip(origins, forecasts, strict=True)
    ]
    return float(np.mean(errors))


async def backtest_choice(
    dispatch: Dispatcher, candidates: list[ExpertHandle], request: ForecastInput, rule: ForecastAuto
) -> BacktestChoice:
    """Measure every candidate on every series (concurrently: the batchers merge them)."""
    first = candidates[0]
    if len(candidates) == 1:
        only = f"the only forecast expert is {first.name!r}"
        return BacktestChoice([first] * len(request.series), [None] * len(request.series), [], only)
    jobs = [
        _measure(dispatch, handle, series, request, rule)
        for series in request.series
        for handle in candidates
    ]
    try:
        async with asyncio.timeout(rule.max_seconds):
            measured = await asyncio.gather(*jobs)
    except TimeoutError:
        why = f"backtest passed its {rule.max_seconds:g}s limit: the first candidate answers"
        return BacktestChoice([first] * len(request.series), [None] * len(request.series), [], why)
    k = len(candidates)
    chosen, errors, scores, notes = [], [], [], []
    for s in range(len(request.series)):
        row = {h.name: e for h, e in zip(candidates, measured[s * k : (s + 1) * k], strict=True)}
        handle, error, note = _pick(candidates, row, rule.tolerance)
        chosen.append(handle)
        errors.append(error)
        scores.append({name: round(e, 4) for name, e in row.items() if e is not None})
        notes.append(f"series {s} -> {handle.name} ({note})")
    step, _ = _cuts(request.series[0], request.horizon, rule)
    shown = "; ".join(notes[:5]) + (f"; ... ({len(notes)} series)" if len(notes) > 5 else "")
    reason = (
        f"rolling-origin backtest, {rule.folds} folds x {step} steps on each series' tail, "
        f"MASE, cheapest within {rule.tolerance:.0%} of the best: {shown}"
    )
    return BacktestChoice(chosen, errors, scores, reason)


def _pick(
    candidates: list[ExpertHandle], row: dict[str, float | None], tolerance: float
) -> tuple[ExpertHandle, float | None, str]:
    measured = {name: e for name, e in row.items() if e is not None}
    if not measured:
        return candidates[0], None, "too short to backtest: the first candidate"
    best = min(measured.values())
    for handle in candidates:  # cheapest first
        error = measured.get(handle.name)
        if error is not None and error <= best * (1 + tolerance) + 1e-12:
            listed = ", ".join(f"{n} {e:.3f}" for n, e in measured.items())
            return handle, error, listed
    raise AssertionError("the best candidate is always within tolerance")
