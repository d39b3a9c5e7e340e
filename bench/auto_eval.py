"""``model: "auto"`` against each single expert, on data no rule was fitted on.

* forecast: Fracast-0 alone, AutoETS alone and ``auto`` (a rolling-origin backtest on
  each series' training tail picks per series), asked in alternating order for every
  series over HTTP in one server run. The held-out steps are never seen by the backtest.
  Series: the seven statsmodels series of ``forecast_eval.py`` plus 24 generated ones
  (trend + season, pure season, random walks, damped noise). Quality: MASE (scaled by
  the training data's seasonal-naive error), cost: seconds per series (auto includes its
  backtest). "oracle" is the better of the two per series, known only afterwards.
* chat routing: ``corral eval --routing`` on the shipped dev set: the default config's
  routes, thresholds fitted on one half, and a kNN vote over that half, all measured on
  the other half.
* documents (``auto_documents.py``, its own section ``auto_eval_documents``): the rule
  (text layer, then OCR) against a text-layer-only and an OCR-only reader on the
  held-out documents generator: field F1 and seconds per page.

    python bench/auto_eval.py [--only forecast-routing|documents] [--documents N]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from _harness import corral_command, free_port, machine, start, stop, write_section
from auto_documents import document_rounds, document_table
from forecast_eval import Series, geomean, load_series

CONFIG = """
models:
  - {name: fracast, model: fracast}
  - {name: ets, model: statsforecast/AutoETS}
"""
METHODS = ["fracast", "ets", "auto"]


def generated(seed: int = 11) -> list[Series]:
    rng = np.random.default_rng(seed)
    t = np.arange(144)
    out = []
    for i in range(6):
        amp, slope = rng.uniform(3, 10), rng.uniform(0.05, 0.6)
        values = 50 + slope * t + amp * np.sin(2 * np.pi * t / 12) + rng.normal(0, 0.5, 144)
        out.append(Series(f"trend+season {i}", values, 12, 12))
        values = 30 + amp * np.sin(2 * np.pi * t / 12 + i) + rng.normal(0, 0.8, 144)
        out.append(Series(f"season {i}", values, 12, 12))
        out.append(Series(f"random walk {i}", 100 + np.cumsum(rng.normal(0, 1, 144)), 1, 12))
        noise = np.zeros(144)
        for k in range(1, 144):
            noise[k] = 0.6 * noise[k - 1] + rng.normal(0, 1)
        out.append(Series(f"AR(1) {i}", 20 + noise, 1, 12))
    return out


def mase(series: Series, mean: np.ndarray) -> float:
    train, m = series.train, max(1, series.season)
    scale = np.mean(np.abs(train[m:] - train[:-m]))
    return float(np.mean(np.abs(series.test - mean)) / scale)


def ask(client: httpx.Client, url: str, model: str, series: Series) -> tuple[dict, float]:
    body = {
        "model": model,
        "series": [series.train.tolist()],
        "horizon": series.holdout,
        "season_length": series.season,
    }
    started = time.perf_counter()
    reply = client.post(url + "/v1/forecast", json=body)
    reply.raise_for_status()
    return reply.json()["data"][0], time.perf_counter() - started


def forecast_rounds() -> tuple[
    list[Series], dict[str, list[float]], dict[str, list[float]], list[str]
]:
    all_series = load_series() + generated()
    errors: dict[str, list[float]] = {m: [] for m in METHODS}
    seconds: dict[str, list[float]] = {m: [] for m in METHODS}
    picks: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "auto.yaml"
        config.write_text(CONFIG)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start(corral_command(config, port), url + "/readyz")
        try:
            with httpx.Client(timeout=600) as client:
                for round_, series in enumerate(all_series):
                    order = METHODS[round_ % 3 :] + METHODS[: round_ % 3]  # alternate
                    for method in order:
                        data, took = ask(client, url, method, series)
                        errors[method].append(mase(series, np.asarray(data["mean"])))
                        seconds[method].append(took)
                        if method == "auto":
                            picks.append(data["expert"])
        finally:
            stop(proc)
    return all_series, errors, seconds, picks


def routing_rows() -> list[dict]:
    from corral.eval.routing_report import compare

    return [r.to_dict() for r in asyncio.run(compare(None, None))]


def report(
    all_series: list[Series],
    errors: dict[str, list[float]],
    seconds: dict[str, list[float]],
    picks: list[str],
    routing: list[dict],
) -> str:
    oracle = [min(a, b) for a, b in zip(errors["fracast"], errors["ets"], strict=True)]
    better = [
        "fracast" if a <= b else "ets"
        for a, b in zip(errors["fracast"], errors["ets"], strict=True)
    ]
    agree = sum(p == b for p, b in zip(picks, better, strict=True)) / len(picks)
    lines = [
        '## `model: "auto"` vs each single expert (`bench/auto_eval.py`)',
        "",
        f"{machine()}; a shared 2-core machine (other jobs were running), so times are "
        "indicative. Nothing below was used to fit the rule it measures.",
        "",
        f"**Forecast**: {len(all_series)} series (7 from statsmodels, 24 generated: trend + "
        "season, season, random walk, AR(1)), the last 1-2 seasons held out and never shown "
        "to the backtest; the three methods asked in alternating order per series.",
        "",
        "| method | mean MASE | geo-mean MASE | vs best single | s per series |",
        "|---|---:|---:|---:|---:|",
    ]
    best_single = min(geomean(errors["fracast"]), geomean(errors["ets"]))
    for method in METHODS:
        g = geomean(errors[method])
        lines.append(
            f"| {method} | {np.mean(errors[method]):.3f} | {g:.3f} | {g / best_single:.2f}x "
            f"| {np.mean(seconds[method]):.2f} |"
        )
    g = geomean(oracle)
    lines.append(
        f"| oracle (better of the two, afterwards) | {np.mean(oracle):.3f} | {g:.3f} "
        f"| {g / best_single:.2f}x | - |"
    )
    lines += [
        "",
        f"auto chose fracast for {picks.count('fracast')} and ets for {picks.count('ets')} "
        f"series; it picked the expert that was better on the held-out steps for "
        f"{agree:.0%} of them.",
        "",
        f"**Chat routing** (`corral eval --routing`, the shipped dev set of {routing[0]['items']} "
        "messages, 6 experts incl. off-topic and ambiguous ones; the default config):",
        "",
        "| method | items | accuracy |",
        "|---|---:|---:|",
    ]
    lines += [f"| {r['method']} | {r['items']} | {r['accuracy']:.3f} |" for r in routing]
    lines += [
        "",
        "The kNN baseline votes over the labelled half's own messages; corral's routes use "
        "the config's examples (written separately) and thresholds. Rerank and detect "
        "`auto` are not scored here: no package ships a cross-encoder or a second detector "
        "of the same classes, so the default has one expert per rule there and no figure "
        "would be honest (their plumbing is tested in tests/test_auto.py). Documents `auto` "
        "is scored in the next section (text layer, then OCR; no layout model ships).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=["forecast-routing", "documents"])
    parser.add_argument("--documents", type=int, default=8, help="Held-out documents a layout.")
    args = parser.parse_args()
    if args.only != "documents":
        all_series, errors, seconds, picks = forecast_rounds()
        routing = routing_rows()
        text = report(all_series, errors, seconds, picks, routing)
        write_section("auto_eval", text)
        print(text)
    if args.only != "forecast-routing":
        heading = [
            '## Documents `model: "auto"` vs each single path (`bench/auto_eval.py`)',
            "",
            f"{machine()}; a shared 2-core machine (other jobs were running), so times are "
            "indicative.",
            "",
        ]
        text = "\n".join(heading + document_table(document_rounds(args.documents)))
        write_section("auto_eval_documents", text)
        print(text)


if __name__ == "__main__":
    sys.exit(main())
