"""``POST /v1/forecast`` over real HTTP with real models: Fracast-0 (weights in its wheel)
and statsforecast's AutoETS, scored on held-out Mauna Loa CO2 against seasonal naive."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from corral.config import parse_config
from tests._server import RunningServer, serve
from tests.tiny_models import chronos_t5

HOLDOUT, SEASON = 24, 12


def _config(chronos_dir: Path) -> str:
    return f"""
models:
  - {{name: fracast, model: fracast, default: true, batch: {{max_wait_ms: 50}}}}
  - {{name: ets, model: statsforecast/AutoETS, options: {{season_length: {SEASON}}}}}
  - {{name: arima, model: statsforecast/AutoARIMA}}
  - {{name: chronos, model: amazon/chronos-t5-base, path: {chronos_dir}}}
"""


@pytest.fixture(scope="module")
def chronos_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-init T5 saved in the Chronos layout (amazon/chronos-t5-base's files)."""
    return chronos_t5(tmp_path_factory.mktemp("chronos"))


@pytest.fixture(scope="module")
def server(chronos_dir: Path) -> Iterator[RunningServer]:
    with serve(parse_config(_config(chronos_dir))) as running:
        yield running


@pytest.fixture(scope="module")
def co2() -> np.ndarray:
    """Monthly means of the weekly Mauna Loa CO2 series (1958-2001, 526 months)."""
    from statsmodels.datasets import co2

    weekly = co2.load_pandas().data["co2"]
    return np.asarray(weekly.resample("MS").mean().interpolate().to_numpy(), dtype=float)


def _post(server: RunningServer, body: dict[str, Any] | str) -> httpx.Response:
    if isinstance(body, str):  # JSON with NaN/Infinity, which json= refuses to send
        return httpx.post(
            server.v1 + "/forecast",
            content=body,
            headers={"content-type": "application/json"},
            timeout=120,
        )
    return httpx.post(server.v1 + "/forecast", json=body, timeout=120)


def _forecast(server: RunningServer, **body: Any) -> dict[str, Any]:
    reply = _post(server, body)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


@pytest.mark.parametrize("model", ["fracast", "ets"])
def test_beats_seasonal_naive_on_held_out_co2(
    server: RunningServer, co2: np.ndarray, model: str
) -> None:
    train, test = co2[:-HOLDOUT], co2[-HOLDOUT:]
    reply = _forecast(server, model=model, series=[train.tolist()], horizon=HOLDOUT)
    assert reply["model"] == model and reply["object"] == "list"
    (data,) = reply["data"]
    mean = np.array(data["mean"])
    low, mid, high = (np.array(data["quantiles"][q]) for q in ("0.1", "0.5", "0.9"))
    assert mean.shape == low.shape == mid.shape == high.shape == (HOLDOUT,)
    # MASE: error over the in-sample one-season-ahead naive error; and the same forecast
    # against seasonal naive (repeat the last season) on the held-out months themselves
    scale = np.mean(np.abs(train[SEASON:] - train[:-SEASON]))
    naive = np.tile(train[-SEASON:], HOLDOUT // SEASON)
    mase = np.mean(np.abs(mean - test)) / scale
    relative = np.mean(np.abs(mean - test)) / np.mean(np.abs(naive - test))
    coverage = np.mean((low <= test) & (test <= high))
    print(f"{model}: MASE {mase:.3f}, vs seasonal naive {relative:.3f}, 10-90 cover {coverage}")
    assert mase < 1.0 and relative < 1.0
    assert np.all(low <= mid) and np.all(mid <= high)
    assert coverage >= 0.5


def test_auto_arima_fits_the_last_decade(server: RunningServer, co2: np.ndarray) -> None:
    """AutoARIMA searches its orders per series (seconds on 500 values): the last ten
    years are enough to beat seasonal naive on the held-out two."""
    train, test = co2[-HOLDOUT - 120 : -HOLDOUT], co2[-HOLDOUT:]
    body = {"series": [train.tolist()], "horizon": HOLDOUT, "season_length": SEASON}
    (data,) = _forecast(server, model="arima", **body)["data"]
    mean, low, high = (np.array(v) for v in (data["mean"], *map(data["quantiles"].get, ("0.1", "0.9"))))
    naive = np.tile(train[-SEASON:], HOLDOUT // SEASON)
    assert np.mean(np.abs(mean - test)) < np.mean(np.abs(naive - test))
    assert np.all(low <= high) and np.mean((low <= test) & (test <= high)) >= 0.5


@pytest.mark.parametrize("model", ["fracast", "ets"])
def test_many_series_answer_in_order_as_each_alone(
    server: RunningServer, co2: np.ndarray, model: str
) -> None:
    t = np.arange(120)
    series = [
        co2[-200:].tolist(),
        (10 + np.sin(2 * np.pi * t / SEASON) + 0.01 * t).tolist(),
        (co2[:60] * 1e6).tolist(),  # another scale
    ]
    together = _forecast(server, model=model, series=series, horizon=30)["data"]
    assert [d["index"] for d in together] == [0, 1, 2]
    for i, values in enumerate(series):
        alone = _forecast(server, model=model, series=[values], horizon=30)["data"][0]
        np.testing.assert_allclose(together[i]["mean"], alone["mean"], rtol=1e-4)
        np.testing.assert_allclose(
            together[i]["quantiles"]["0.9"], alone["quantiles"]["0.9"], rtol=1e-4
        )
    assert abs(np.mean(together[2]["mean"]) / np.mean(co2[:60]) / 1e6 - 1) < 0.05


def test_concurrent_requests_batched_together_keep_their_own_horizons(
    server: RunningServer, co2: np.ndarray
) -> None:
    bodies = [
        {"series": [co2[-300:].tolist()], "horizon": h, "quantiles": [q]}
        for h, q in ((5, 0.3), (60, 0.5), (100, 0.85))
    ]
    alone = [_forecast(server, **body)["data"][0] for body in bodies]
    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(lambda b: _forecast(server, **b)["data"][0], bodies))
    for body, one, many in zip(bodies, alone, together, strict=True):
        (key,) = many["quantiles"]
        assert len(many["mean"]) == body["horizon"] and key == str(body["quantiles"][0])
        np.testing.assert_allclose(many["quantiles"][key], one["quantiles"][key], rtol=1e-4)


def test_fracast_interpolates_between_its_levels_and_refuses_outside(
    server: RunningServer, co2: np.ndarray
) -> None:
    series = [co2[-240:].tolist()]
    data = _forecast(server, series=series, horizon=12, quantiles=[0.1, 0.15, 0.2, 0.5])
    assert data["model"] == "fracast"  # the default forecast expert
    q = {k: np.array(v) for k, v in data["data"][0]["quantiles"].items()}
    np.testing.assert_allclose(q["0.15"], (q["0.1"] + q["0.2"]) / 2, rtol=1e-6)
    np.testing.assert_allclose(q["0.5"], data["data"][0]["mean"])
    reply = _post(server, {"series": series, "horizon": 12, "quantiles": [0.5, 0.05]})
    assert reply.status_code == 422
    error = reply.json()["error"]
    assert error["param"] == "quantiles[1]" and "0.1 to 0.9" in error["message"]
    # statsforecast's normal intervals have every level
    ets = _forecast(server, model="ets", series=series, horizon=12, quantiles=[0.05, 0.5, 0.95])
    q = {k: np.array(v) for k, v in ets["data"][0]["quantiles"].items()}
    assert np.all(q["0.05"] < q["0.5"]) and np.all(q["0.5"] < q["0.95"])
    np.testing.assert_allclose(q["0.5"] - q["0.05"], q["0.95"] - q["0.5"], rtol=1e-6)


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_values_are_422_naming_the_position(server: RunningServer, bad: str) -> None:
    body = f'{{"model": "ets", "series": [[1,2,3,4,5,6,7,8], [1,2,3,{bad},5,6,7,8]], "horizon": 3, "season_length": 1}}'
    reply = _post(server, body)
    assert reply.status_code == 422, reply.text
    error = reply.json()["error"]
    assert error["param"] == "series[1][3]" and "series[1][3]" in error["message"]


def test_empty_and_short_series_are_422(server: RunningServer) -> None:
    for body, param, words in [
        ({"series": [[]], "horizon": 3}, "series[0]", "has 0 values; fracast needs at least 8"),
        ({"series": [[1.0] * 10, [1.0] * 5], "horizon": 3}, "series[1]", "at least 8"),
        (
            {"model": "ets", "series": [list(range(20))], "horizon": 3},
            "series[0]",
            "needs at least 24 (two seasons of 12)",
        ),
    ]:
        reply = _post(server, body)
        assert reply.status_code == 422, reply.text
        error = reply.json()["error"]
        assert error["param"] == param and words in error["message"], error
    # the request's season_length overrides the expert's: 20 values hold two of 5
    ok = _forecast(server, model="ets", series=[list(range(20))], horizon=3, season_length=5)
    assert len(ok["data"][0]["mean"]) == 3


def test_limits_are_413_naming_them(server: RunningServer) -> None:
    for body, limit in [
        ({"series": [[1.0] * 10], "horizon": 10_001}, "server.limits.max_horizon"),
        ({"series": [[1.0] * 10] * 257, "horizon": 1}, "server.limits.max_batch_items"),
        ({"series": [[1] * 100_001], "horizon": 1}, "server.limits.max_series_length"),
    ]:
        reply = _post(server, body)
        assert reply.status_code == 413, reply.text
        assert limit in reply.json()["error"]["message"]


@pytest.mark.parametrize("model", ["fracast", "ets"])
def test_awkward_series_never_5xx(server: RunningServer, model: str) -> None:
    for values in ([5.0] * 30, [0.0] * 30, [1e300, -1e300] * 15, [1e-300, 2e-300] * 15):
        reply = _post(server, {"model": model, "series": [values], "horizon": 50})
        assert reply.status_code in (200, 422), (values[:2], reply.text)
        if reply.status_code == 200:
            mean = reply.json()["data"][0]["mean"]
            assert len(mean) == 50 and all(math.isfinite(v) for v in mean)
    constant = _forecast(server, model=model, series=[[5.0] * 30], horizon=4)["data"][0]
    np.testing.assert_allclose(constant["mean"], 5.0, rtol=1e-3)


def test_chronos_loads_the_hub_layout_and_matches_the_pipeline(
    server: RunningServer, chronos_dir: Path
) -> None:
    """The founding id serves through chronos-forecasting's own pipeline: same seeded
    samples as calling it directly (plumbing on random weights, not quality)."""
    import torch
    from chronos import BaseChronosPipeline

    series = [[float(10 + (i % 12)) for i in range(40)], [float(3 * i) for i in range(30)]]
    body = {"model": "chronos", "series": series, "horizon": 5, "quantiles": [0.1, 0.9]}
    first, again = _forecast(server, **body), _forecast(server, **body)
    assert first["data"] == again["data"]  # seeded: the same request, the same answer

    pipeline = BaseChronosPipeline.from_pretrained(str(chronos_dir), dtype="float32")
    scales = [max(abs(v) for v in s) for s in series]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        quantiles, mean = pipeline.predict_quantiles(
            [torch.tensor(s, dtype=torch.float32) / k for s, k in zip(series, scales, strict=True)],
            prediction_length=5,
            quantile_levels=[0.1, 0.5, 0.9],
        )
    for row, data in enumerate(first["data"]):
        np.testing.assert_allclose(data["mean"], mean[row].numpy() * scales[row], rtol=1e-5)
        for j, level in ((0, "0.1"), (2, "0.9")):
            expected = quantiles[row, :, j].numpy() * scales[row]
            np.testing.assert_allclose(data["quantiles"][level], expected, rtol=1e-5)
        assert all(lo <= hi for lo, hi in zip(data["quantiles"]["0.1"], data["quantiles"]["0.9"], strict=True))


def test_unknown_expert_is_404(server: RunningServer) -> None:
    reply = _post(server, {"model": "nope", "series": [[1.0]], "horizon": 1})
    assert reply.status_code == 404
    assert "fracast" in reply.json()["error"]["message"]


def test_json_nan_never_reaches_a_reply(server: RunningServer) -> None:
    """Replies are strict JSON (a NaN forecast would be a 500 at serialisation)."""
    body = json.dumps({"series": [[1.0, 2.0] * 20], "horizon": 100, "quantiles": [0.1, 0.9]})
    reply = _post(server, body)
    assert reply.status_code == 200
    json.loads(reply.text, parse_constant=lambda c: pytest.fail(f"{c} in reply"))
