"""Embedding latency while a long forecast and a graph fit run, vs idle (issue 27).

One `corral serve` with an embedder, a forecaster and a graph expert. Rounds alternate:
an idle round (sequential single-text embeddings), then a loaded round (the same
embeddings while a 64-series x 10,000-step forecast and a 5,000-epoch graph fit run,
each with `timeout_s`, so they end in 504 and are cancelled). Before per-expert workers
the forecast alone held the embedder's thread for minutes; the ratio of p50s is what
RELIABILITY.md bounds.

    python bench/isolation_latency.py [--rounds 3] [--requests 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _harness import corral_command, free_port, machine, start, stop, write_section

NODES = 3000
FORECAST = {
    "model": "forecaster",
    "series": [[float((i * 7 + j) % 13) for j in range(256)] for i in range(64)],
    "horizon": 10_000,
}
FIT = {
    "model": "graph",
    "nodes": {"features": [[float(i % 7), float(i % 3)] for i in range(NODES)]},
    "edges": [[i % NODES, (i * 31 + 7) % NODES] for i in range(NODES * 4)],
    "labels": {str(i): str(i % 2) for i in range(0, NODES, 5)},
    "epochs": 5000,
}


def embed_p50(client: httpx.Client, url: str, count: int) -> float:
    seconds = []
    for i in range(count):
        started = time.perf_counter()
        client.post(
            url + "/v1/embeddings", json={"input": [f"a short text {i}"]}
        ).raise_for_status()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def loaded_p50(client: httpx.Client, url: str, count: int, timeout_s: float) -> tuple[float, str]:
    statuses: list[int] = []

    def post(path: str, body: dict[str, Any]) -> None:
        reply = httpx.post(url + path, json={**body, "timeout_s": timeout_s}, timeout=600)
        statuses.append(reply.status_code)

    heavy = [
        threading.Thread(target=post, args=("/v1/forecast", FORECAST)),
        threading.Thread(target=post, args=("/v1/graph/bench/fit", FIT)),
    ]
    for thread in heavy:
        thread.start()
    time.sleep(1.0)  # both are on their workers
    p50 = embed_p50(client, url, count)
    for thread in heavy:
        thread.join()
    return p50, "/".join(str(s) for s in sorted(statuses))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--timeout-s", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "corral.yaml"
        config.write_text(
            """
models:
  - {name: embedder, model: sentence-transformers/all-MiniLM-L6-v2, default: true}
  - {name: forecaster, model: fracast}
  - {name: graph, model: pyg/GCN}
observe: {usage: false}
"""
        )
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        load = os.getloadavg()[0]
        proc = start(corral_command(config, port), url + "/readyz", env={"CORRAL_STATE_DIR": tmp})
        idle, loaded, statuses = [], [], set()
        try:
            with httpx.Client(timeout=600) as client:
                embed_p50(client, url, 5)  # warm-up
                for round_ in range(args.rounds):
                    idle.append(embed_p50(client, url, args.requests))
                    p50, status = loaded_p50(client, url, args.requests, args.timeout_s)
                    loaded.append(p50)
                    statuses.add(status)
                    print(
                        f"round {round_}: idle {idle[-1] * 1000:.1f} ms, loaded {p50 * 1000:.1f} ms"
                    )
        finally:
            stop(proc)
    idle_ms, loaded_ms = statistics.median(idle) * 1000, statistics.median(loaded) * 1000
    ratio = loaded_ms / idle_ms
    print(f"p50 idle {idle_ms:.1f} ms, loaded {loaded_ms:.1f} ms: {ratio:.2f}x")
    write_section(
        "isolation_latency",
        f"""
## Embedding latency beside long fits (`bench/isolation_latency.py`)

MiniLM `/v1/embeddings`, one short text a request, {args.requests} sequential requests a
round, {args.rounds} idle and {args.rounds} loaded rounds alternating; loaded: a fracast
forecast of 64 series x 10,000 steps and a 5,000-epoch GCN fit on {NODES} nodes running
meanwhile, each with `timeout_s: {args.timeout_s:g}` (they answered {", ".join(sorted(statuses))}
and were cancelled). {machine()}, a shared machine (1-minute load average {load:.1f} at
the start: other work on the cores skews these).

| | p50 (median of rounds) |
|---|---:|
| idle | {idle_ms:.1f} ms |
| while the forecast and the fit run | {loaded_ms:.1f} ms |
| ratio | {ratio:.2f}x |

Before a worker per expert, the same forecast held the one torch thread the embedder
shared for over 20 minutes (so no side-by-side run of the old layout: one loaded round
would take that long). One short text embeds in ~7 ms on a quiet machine: an idle p50
far above that means other work held the cores, which dilutes the ratio; rerun on a
quiet machine for a clean figure. The test bound (tests/test_isolation.py) is 8x.
""",
    )


if __name__ == "__main__":
    main()
