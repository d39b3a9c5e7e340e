"""What corral's request path costs on its own: one-sentence ``/v1/embeddings`` requests
to corral serving a fake embedder (``tests/fakes.py``: a hashed vector, no model) vs a
bare FastAPI app that validates the same body and writes a fixed vector (the floor any
FastAPI service pays). Both on uvicorn's httptools parser.

The figure is the event loop's CPU per request (the server's main thread, from
``/proc``; Linux only) and requests/s under 32 wrk clients. On a real model the forward
pass runs on worker threads, so the event loop's time per request is what the request
path adds to every call, and what limits throughput once the cores are full. Systems run
one at a time, rounds alternate, medians go into BENCHMARKS.md.

    apt-get install wrk
    python bench/request_overhead.py [--seconds 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _harness import _lua_string, free_port, machine, print_round, start, stop, write_section

CLIENTS = 32
SERVERS = Path(__file__).with_name("_overhead_servers.py")
READY = {"bare": "/health", "corral": "/readyz"}


def loop_seconds(pid: int) -> float:
    """CPU seconds the process's main thread (its event loop) has used."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks


def measure(url: str, pid: int, seconds: int) -> tuple[float, float]:
    """(requests/s, event-loop milliseconds per request) over ``seconds`` of wrk."""
    body = json.dumps({"model": "fake", "input": ["the quick brown fox and the lazy dog"]})
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(
        f"wrk.method = 'POST'\nwrk.body = {_lua_string(body)}\n"
        "wrk.headers['Content-Type'] = 'application/json'\n"
    )
    wrk = ["wrk", "-t1", f"-c{CLIENTS}", "-s", str(script), url + "/v1/embeddings"]
    try:
        subprocess.run([wrk[0], "-d3s", *wrk[1:]], check=True, capture_output=True)
        before = loop_seconds(pid)
        out = subprocess.run(
            [wrk[0], f"-d{seconds}s", *wrk[1:]], check=True, capture_output=True, text=True
        ).stdout
        used = loop_seconds(pid) - before
    finally:
        script.unlink()
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"errors under load:\n{out}")
    requests = re.search(r"(\d+) requests in", out)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert requests is not None and rate is not None, out
    return float(rate.group(1)), 1e3 * used / int(requests.group(1))


def run(system: str, seconds: int) -> tuple[float, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start([sys.executable, str(SERVERS), system, str(port)], url + READY[system])
    try:
        return measure(url, proc.pid, seconds)
    finally:
        stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[float]] = {}
    for round_no in range(args.rounds):
        order = ["bare", "corral"] if round_no % 2 == 0 else ["corral", "bare"]
        got: dict[str, float] = {}
        for system in order:
            got[system], got[f"{system}_loop_ms"] = run(system, args.seconds)
        print_round(round_no, got)
        for key, value in got.items():
            results.setdefault(key, []).append(value)
    med = {k: statistics.median(v) for k, v in results.items()}
    body = f"""## Request overhead: corral's request path vs bare FastAPI

`bench/request_overhead.py`, {machine()}: one-sentence `/v1/embeddings` requests, {CLIENTS}
wrk clients, {args.seconds} s x {args.rounds} alternating rounds, medians. corral serves a
fake embedder (no model), so only its request path is measured: auth, limits, the
trace, metrics, routing, the dispatcher, the micro-batcher and its worker thread, the
cost meter, the usage log.

| system | requests/s | event-loop CPU per request |
|---|---:|---:|
| bare FastAPI (pydantic body, orjson reply) | {med["bare"]:.0f} | {med["bare_loop_ms"]:.3f} ms |
| corral, fake embedder | {med["corral"]:.0f} | {med["corral_loop_ms"]:.3f} ms |

corral's request path costs {med["corral_loop_ms"] - med["bare_loop_ms"]:.3f} ms of event
loop per request more than the floor ({med["corral_loop_ms"] / med["bare_loop_ms"]:.1f}x).
On a real model that time comes on top of the forward pass on the same cores: it is what
keeps `embed_throughput`'s corral below its bare ceilings on small requests.
"""
    write_section("request-overhead", body)
    print(body)


if __name__ == "__main__":
    main()
