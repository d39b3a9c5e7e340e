"""Forecast quality and throughput per backend, against seasonal naive, in one server run.

Series shipped with statsmodels (monthly CO2 and El Nino, yearly sunspots and Nile,
quarterly US GDP, CPI and unemployment); the last season or two of each is held out.
Every backend is asked over HTTP for the mean and the nine deciles; seasonal naive (the
last season repeated, with quantiles from the training data's seasonal differences) is
computed here. Reports MASE, sMAPE and weighted quantile loss (WQL), each backend's
geometric-mean ratio to seasonal naive, and series/s for a batch of 64 series.

    python bench/forecast_eval.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from _harness import corral_command, free_port, machine, start, stop, write_section

CONFIG = """
models:
  - {name: fracast, model: fracast, default: true}
  - {name: AutoETS, model: statsforecast/AutoETS}
  - {name: AutoTheta, model: statsforecast/AutoTheta}
  - {name: AutoARIMA, model: statsforecast/AutoARIMA}
"""
BACKENDS = ["fracast", "AutoETS", "AutoTheta", "AutoARIMA"]
LEVELS = [round(0.1 * i, 1) for i in range(1, 10)]


@dataclass(frozen=True)
class Series:
    name: str
    values: np.ndarray
    season: int
    holdout: int

    @property
    def train(self) -> np.ndarray:
        return self.values[: -self.holdout]

    @property
    def test(self) -> np.ndarray:
        return self.values[-self.holdout :]


def load_series() -> list[Series]:
    from statsmodels.datasets import co2, elnino, macrodata, nile, sunspots

    weekly = co2.load_pandas().data["co2"]
    monthly_co2 = weekly.resample("MS").mean().interpolate().to_numpy()
    nino = elnino.load_pandas().data.drop(columns="YEAR").to_numpy().ravel()
    macro = macrodata.load_pandas().data
    return [
        Series("co2 (monthly)", monthly_co2, 12, 24),
        Series("elnino (monthly)", nino, 12, 24),
        Series("sunspots (yearly)", sunspots.load_pandas().data["SUNACTIVITY"].to_numpy(), 11, 11),
        Series("nile (yearly)", nile.load_pandas().data["volume"].to_numpy(), 1, 10),
        Series("US real GDP (quarterly)", macro["realgdp"].to_numpy(), 4, 8),
        Series("US CPI (quarterly)", macro["cpi"].to_numpy(), 4, 8),
        Series("US unemployment (quarterly)", macro["unemp"].to_numpy(), 4, 8),
    ]


def seasonal_naive(series: Series) -> tuple[np.ndarray, dict[float, np.ndarray]]:
    train, m, h = series.train, series.season, series.holdout
    mean = np.resize(train[-m:], h) if m > 1 else np.full(h, train[-1])
    residuals = train[m:] - train[:-m]
    return mean, {q: mean + np.quantile(residuals, q) for q in LEVELS}


def scores(series: Series, mean: np.ndarray, bands: dict[float, np.ndarray]) -> dict[str, float]:
    y, train, m = series.test, series.train, series.season
    scale = np.mean(np.abs(train[m:] - train[:-m]))
    pinball = [2 * np.sum(np.maximum(q * (y - bands[q]), (q - 1) * (y - bands[q]))) for q in LEVELS]
    return {
        "MASE": float(np.mean(np.abs(y - mean)) / scale),
        "sMAPE": float(np.mean(2 * np.abs(y - mean) / (np.abs(y) + np.abs(mean)))),
        "WQL": float(np.mean(pinball) / np.sum(np.abs(y))),
    }


def ask(client: httpx.Client, url: str, model: str, series: Series) -> tuple[dict, float]:
    body = {
        "model": model,
        "series": [series.train.tolist()],
        "horizon": series.holdout,
        "quantiles": LEVELS,
        "season_length": series.season,
    }
    started = time.perf_counter()
    reply = client.post(url + "/v1/forecast", json=body)
    reply.raise_for_status()
    return reply.json()["data"][0], time.perf_counter() - started


def throughput(client: httpx.Client, url: str, model: str, batch: list[list[float]]) -> float:
    body = {"model": model, "series": batch, "horizon": 12, "season_length": 12}
    client.post(url + "/v1/forecast", json={**body, "series": batch[:2]}).raise_for_status()
    started = time.perf_counter()
    client.post(url + "/v1/forecast", json=body).raise_for_status()
    return len(batch) / (time.perf_counter() - started)


def geomean(values: list[float]) -> float:
    return float(np.exp(np.mean(np.log(np.maximum(values, 1e-12)))))


def main() -> None:
    all_series = load_series()
    results: dict[str, list[dict[str, float]]] = {"seasonal naive": []}
    seconds: dict[str, list[float]] = {b: [] for b in BACKENDS}
    for series in all_series:
        results["seasonal naive"].append(scores(series, *seasonal_naive(series)))
    rng = np.random.default_rng(0)
    months = np.arange(200)
    batch = [
        (10 + 3 * np.sin(months * np.pi / 6 + rng.uniform(0, 6)) + rng.normal(0, 0.5, 200)).tolist()
        for _ in range(64)
    ]
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "forecast.yaml"
        config.write_text(CONFIG)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start(corral_command(config, port), url + "/readyz")
        try:
            with httpx.Client(timeout=600) as client:
                for backend in BACKENDS:
                    results[backend] = []
                    for series in all_series:
                        data, took = ask(client, url, backend, series)
                        bands = {q: np.asarray(data["quantiles"][str(q)]) for q in LEVELS}
                        results[backend].append(scores(series, np.asarray(data["mean"]), bands))
                        seconds[backend].append(took)
                    rates[backend] = throughput(client, url, backend, batch)
        finally:
            stop(proc)
    write_section("forecast_eval", report(all_series, results, seconds, rates))
    print(report(all_series, results, seconds, rates))


def report(
    all_series: list[Series],
    results: dict[str, list[dict[str, float]]],
    seconds: dict[str, list[float]],
    rates: dict[str, float],
) -> str:
    naive = results["seasonal naive"]
    lines = [
        "## Forecast quality per backend (`bench/forecast_eval.py`)",
        "",
        f"{len(all_series)} series shipped with statsmodels ("
        + ", ".join(s.name for s in all_series)
        + "), the last 1-2 seasons held out; mean and nine deciles asked over HTTP. "
        f"{machine()}. Ratios are geometric means over the series of the backend's score "
        "divided by seasonal naive's (below 1.00x is better than seasonal naive).",
        "",
        "| backend | mean MASE | mean sMAPE | mean WQL | MASE vs naive | WQL vs naive "
        "| s per series | series/s (64 in one request) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for backend, rows in results.items():
        mase = [r["MASE"] / n["MASE"] for r, n in zip(rows, naive, strict=True)]
        wql = [r["WQL"] / n["WQL"] for r, n in zip(rows, naive, strict=True)]
        took = f"{np.mean(seconds[backend]):.2f}" if backend in seconds else "-"
        rate = f"{rates[backend]:.1f}" if backend in rates else "-"
        lines.append(
            f"| {backend} | {np.mean([r['MASE'] for r in rows]):.3f} "
            f"| {np.mean([r['sMAPE'] for r in rows]):.3f} | {np.mean([r['WQL'] for r in rows]):.3f} "
            f"| {geomean(mase):.2f}x | {geomean(wql):.2f}x | {took} | {rate} |"
        )
    lines += ["", "MASE per series:", "", "| series | " + " | ".join(results) + " |"]
    lines.append("|---|" + "---:|" * len(results))
    for i, series in enumerate(all_series):
        cells = " | ".join(f"{rows[i]['MASE']:.3f}" for rows in results.values())
        lines.append(f"| {series.name} | {cells} |")
    lines += [
        "",
        "Chronos (`amazon/chronos-t5-base`) is served by the `chronos` backend from a local "
        "copy of its weights; none can be downloaded here, so it is not in this table.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
