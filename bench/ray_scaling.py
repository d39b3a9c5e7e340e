"""Embedding throughput on Ray Serve with 1 vs 2 replicas, and the embedded engine for
reference, side by side in one run on this machine (127.0.0.1 only).

The same YAML each time (all-MiniLM-L6-v2, batch up to 64), only its `ray:` settings
change: one replica reserving both cores, or two replicas reserving one core each (Ray
sets a replica's OMP_NUM_THREADS to its whole cores, so torch uses as many threads).
Two loads from wrk (a C load generator, so the client barely competes for the cores):
64 connections sending one sentence per request, and 8 connections sending 32 sentences
per request. Beside each setup: how many cores other work on the machine kept busy while
it was measured (all CPU time in /proc/stat minus this process tree's: Ray, the server,
wrk), since the cores are shared. Writes section `ray_scaling` of BENCHMARKS.md.

    apt-get install wrk
    python bench/ray_scaling.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx
from _harness import corral_command, free_port, machine, start, stop, write_section

from corral.config import parse_config

CONFIG = """
models:
  - name: embedder
    model: sentence-transformers/all-MiniLM-L6-v2
    batch: {{max_size: 64}}
    ray: {ray}
runtime:
  ray: {{num_cpus: 2, ingress: {{num_cpus: 0}}}}  # the ingress reserves nothing: the replicas take both cores
observe: {{usage: false}}
"""
# (label, the model's `ray:` settings); the embedded engine ignores them
SETUPS = [
    ("embedded engine (one process)", None),
    ("Ray Serve, 1 replica x 2 CPUs", "{replicas: 1, num_cpus: 2, max_ongoing_requests: 128}"),
    ("Ray Serve, 2 replicas x 1 CPU", "{replicas: 2, num_cpus: 1, max_ongoing_requests: 128}"),
]
# (label, wrk connections, sentences per request)
LOADS = [("64 clients x 1 sentence", 64, 1), ("8 clients x 32 sentences", 8, 32)]

WRK_SCRIPT = """
local counter = 0
request = function()
  counter = counter + 1
  local items = {}
  for i = 1, ITEMS do
    items[i] = '"sentence ' .. counter .. '-' .. i .. ' about the quick brown fox and the lazy dog"'
  end
  local body = '{"input":[' .. table.concat(items, ",") .. ']}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
"""


def _busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (first line of /proc/stat)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _our_seconds() -> float:
    """CPU seconds of this process and everything below it (Ray's processes, the
    embedded server, wrk once reaped), with the reaped children each one counts."""
    parent: dict[int, int] = {}
    spent: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            after_name = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        pid = int(proc.name)
        parent[pid] = int(after_name[1])
        spent[pid] = sum(int(after_name[i]) for i in (11, 12, 13, 14))  # u/s time, children's
    ours, frontier = {os.getpid()}, [os.getpid()]
    while frontier:
        below = [pid for pid, ppid in parent.items() if ppid in frontier and pid not in ours]
        ours.update(below)
        frontier = below
    return sum(spent.get(pid, 0) for pid in ours) / os.sysconf("SC_CLK_TCK")


def other_cores(measure: Callable[[], float]) -> tuple[float, float]:
    """``measure()``, and the cores other work kept busy meanwhile."""
    busy, ours, started = _busy_seconds(), _our_seconds(), time.perf_counter()
    value = measure()
    elapsed = time.perf_counter() - started
    other = (_busy_seconds() - busy) - (_our_seconds() - ours)
    return value, max(0.0, other / elapsed)


def sentences_per_second(url: str, clients: int, items: int, seconds: int) -> tuple[float, float]:
    """Sentences/s under wrk, and the cores other work kept busy meanwhile."""
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(WRK_SCRIPT.replace("ITEMS", str(items)))
    base = ["wrk", "-t1", f"-c{clients}", "-s", str(script), "--timeout", "30s"]
    target = url + "/v1/embeddings"
    subprocess.run([*base, "-d3s", target], check=True, capture_output=True)  # warm-up
    out, others = other_cores(
        lambda: (
            subprocess.run(
                [*base, f"-d{seconds}s", target], check=True, capture_output=True, text=True
            ).stdout
        )
    )
    script.unlink()
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"errors under load:\n{out}")
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert found is not None, out
    return float(found.group(1)) * items, others


@contextmanager
def embedded(text: str, folder: Path) -> Iterator[str]:
    config = folder / "embedded.yaml"
    config.write_text(text)
    port = free_port()
    proc = start(corral_command(config, port), f"http://127.0.0.1:{port}/readyz")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@contextmanager
def on_ray(text: str) -> Iterator[str]:
    from corral.engines.ray import serving

    with serving(parse_config(text), host="127.0.0.1", port=free_port()) as url:
        deadline = time.monotonic() + 120
        while httpx.get(url + "/readyz", timeout=5).status_code != 200:
            if time.monotonic() > deadline:
                raise TimeoutError("ray app not ready")
            time.sleep(0.5)
        yield url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20, help="wrk duration per measurement")
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    results: dict[str, list[float]] = {}
    loads: dict[str, float] = {}  # the 1-minute load average as each setup finished
    others: dict[str, float] = {}  # cores other work kept busy, the most in any cell
    with tempfile.TemporaryDirectory() as tmp:
        for label, settings in SETUPS:
            text = CONFIG.format(ray=settings or "{}")
            runner: Callable[[], AbstractContextManager[str]]
            if settings is None:
                runner = lambda text=text: embedded(text, Path(tmp))  # noqa: E731
            else:
                runner = lambda text=text: on_ray(text)  # noqa: E731
            started = time.perf_counter()
            with runner() as url:
                ready = time.perf_counter() - started
                cells = [
                    sentences_per_second(url, clients, items, args.seconds)
                    for _, clients, items in LOADS
                ]
                loads[label] = os.getloadavg()[0]
            results[label] = [rate for rate, _ in cells]
            others[label] = max(other for _, other in cells)
            print(
                f"{label}: ready in {ready:.0f}s, sentences/s {results[label]}, "
                f"other work {others[label]:.2f} cores",
                flush=True,
            )
    if ray.is_initialized():
        ray.shutdown()
    write_section("ray_scaling", report(results, loads, others, args.seconds))


def report(
    results: dict[str, list[float]],
    loads: dict[str, float],
    others: dict[str, float],
    seconds: int,
) -> str:
    reference = results[SETUPS[0][0]]
    head = " | ".join(f"{load} (sentences/s, x embedded)" for load, _, _ in LOADS)
    rows = [
        f"| {label} | "
        + " | ".join(f"{v:.0f} ({v / r:.2f}x)" for v, r in zip(values, reference, strict=True))
        + f" | {loads[label]:.1f} | {others[label]:.2f} |"
        for label, values in results.items()
    ]
    return f"""## Ray Serve scaling: 1 vs 2 embedder replicas (`bench/ray_scaling.py`)

{machine()}; all-MiniLM-L6-v2, batch up to 64, wrk for {seconds} s per cell after a 3 s
warm-up, everything on 127.0.0.1 (a local one-node Ray cluster with 2 CPUs). The last
two columns: the machine's 1-minute load average as the setup finished (it counts the
setup's own processes: wrk, and on Ray the proxy, ingress, controller and replicas, so a
Ray setup reads above 2 by itself), and the cores that other work kept busy while the
setup was measured (the most in any cell: all CPU time in /proc/stat minus this bench's
process tree). Where that is well above 0, other work shared the cores and the figures
say more about that than about the engines.

| setup | {head} | load average | other work (cores) |
|---|{"---|" * len(LOADS)}---|---|
{chr(10).join(rows)}

What limits it here: two cores are all there is, so a second replica cannot add
compute: it splits the same cores (one torch thread each instead of two). Every request
on Ray takes two more hops than embedded (Serve's HTTP proxy -> the ingress replica with
corral's app and router -> the expert's replica), each a process boundary with
pickling, and those processes (proxy, ingress, controller, raylet) compete with the
model for the same two cores. One-sentence requests pay the hops per sentence, so they
lose the most; 32-sentence requests amortise them over the batch. (Under heavy
contention from other work the ranking can flip: the scheduler shares CPU per busy
thread, and Ray has more of them.)

What to expect per added node: replicas placed on other nodes (`ray: {{replicas: N}}` or
`autoscaling`) bring their own cores, so throughput grows by roughly one node's worth of
what the single-process ceiling is on that node, minus the hop overhead, until the
ingress becomes the limit (then give the ingress replicas too: `runtime.ray.ingress`).
"""


if __name__ == "__main__":
    main()
