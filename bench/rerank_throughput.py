"""Rerank throughput: corral's cross-encoder over HTTP vs a bare batched CrossEncoder call.

One query x 100 passages per request, a MiniLM-L6-sized BERT cross-encoder (the
architecture of cross-encoder/ms-marco-MiniLM-L-6-v2, random-init: no package ships a
trained one, and speed does not depend on the weights). corral serves it on torch, as
its ONNX export on ONNX Runtime (``runtime: onnx``) and on OpenVINO (``runtime:
openvino``; the accuracy guard may refuse bf16 on random weights, whose scores nearly
tie: the table says what served). Systems run one at a time, rounds alternate, medians
go into BENCHMARKS.md.

    apt-get install wrk
    python bench/rerank_throughput.py [--seconds 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
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
    wrk_rate,
)

PASSAGES = 100
CLIENTS = 4
BATCH = 32  # corral's batch for each expert and the bare call's batch_size
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)
QUERY = "how do I reset a forgotten password on my account"
PASSAGE_TEXT = (
    "to change a forgotten password open the settings page and choose reset then follow "
    "the link we send to your email address within one hour or ask the support team"
)


def passages() -> list[str]:
    """100 passages of 20-60 words (30-80 tokens), as a search engine's candidates would be."""
    words = PASSAGE_TEXT.split()
    return [
        " ".join(words[(i + j) % len(words)] for j in range(20 + (i * 7) % 41))
        for i in range(PASSAGES)
    ]


def build_cross_encoder(minilm: Path, target: Path) -> Path:
    """BERT with MiniLM-L6's shape and one relevance logit, random-init, MiniLM's tokenizer."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    transformer = json.loads((minilm / "config.json").read_text())
    config = BertConfig(**{**transformer, "num_labels": 1, "architectures": None})
    BertForSequenceClassification(config).save_pretrained(str(target))
    for name in TOKENIZER_FILES:
        if (minilm / name).is_file():
            shutil.copy(minilm / name, target / name)
    return target


def bare_cross_encoder(model_dir: Path) -> Callable[[list[tuple[str, str]]], object]:
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(model_dir), device="cpu")
    return lambda pairs: model.predict(pairs, batch_size=BATCH, show_progress_bar=False)


def bare_rate(
    score: Callable[[list[tuple[str, str]]], object], docs: list[str]
) -> tuple[float, float]:
    """(passages/s, p50 seconds per 100-passage call) of the bare call, one at a time."""
    pairs = [(QUERY, d) for d in docs]
    score(pairs)  # warm-up
    times = []
    for _ in range(8):
        started = time.perf_counter()
        score(pairs)
        times.append(time.perf_counter() - started)
    median = statistics.median(times)
    return PASSAGES / median, median


def single_p50(url: str, model: str, docs: list[str]) -> float:
    times = []
    with httpx.Client(timeout=120) as client:
        for _ in range(12):
            started = time.perf_counter()
            body = {"model": model, "query": QUERY, "documents": docs}
            client.post(url, json=body).raise_for_status()
            times.append(time.perf_counter() - started)
    return statistics.median(times[2:])


CONFIG = """models:
{experts}
"""
EXPERTS = {
    "torch": "{{}}",
    "onnx": "{{runtime: onnx}}",
    "openvino": "{{runtime: openvino}}",
}


def corral_config(model_dir: Path) -> str:
    lines = [
        f"  - {{name: {name}, model: {model_dir}, task: rerank, backend: cross-encoder, "
        f"options: {options.format()}, batch: {{max_size: {BATCH}}}}}"
        for name, options in EXPERTS.items()
    ]
    return CONFIG.format(experts="\n".join(lines))


def one_round(
    round_no: int, url: str, bare: Callable[[list[tuple[str, str]]], object], docs: list[str],
    seconds: int,
) -> dict[str, float]:  # fmt: skip
    got: dict[str, float] = {}
    body = json.dumps({"model": "MODEL", "query": QUERY, "documents": docs})

    def corral(model: str) -> None:
        rerank = f"{url}/v1/rerank"
        rate = wrk_rate(rerank, body.replace("MODEL", model), seconds, CLIENTS)
        got[f"corral-{model}"] = rate * PASSAGES
        got[f"corral-{model}_p50"] = single_p50(rerank, model, docs)

    def bare_system() -> None:
        got["bare"], got["bare_p50"] = bare_rate(bare, docs)

    steps = [
        lambda: corral("torch"),
        bare_system,
        lambda: corral("onnx"),
        lambda: corral("openvino"),
    ]
    for step in steps if round_no % 2 == 0 else reversed(steps):
        step()
    print_round(round_no, got)
    return got


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8, help="wrk duration per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (medians)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    minilm = minilm_dir()
    work = Path(tempfile.mkdtemp(prefix="corral-rerank-bench-"))
    model_dir = build_cross_encoder(minilm, work / "cross-encoder")
    docs = passages()
    bare = bare_cross_encoder(model_dir)
    config = work / "corral.yaml"
    config.write_text(corral_config(model_dir))
    port = free_port()
    env = {"CORRAL_STATE_DIR": str(work / "state")}
    proc = start(corral_command(config, port), f"http://127.0.0.1:{port}/readyz", env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        runtimes = {c["id"]: c.get("runtime") for c in httpx.get(f"{url}/v1/models").json()["data"]}
        rounds = [one_round(i, url, bare, docs, args.seconds) for i in range(args.rounds)]
    finally:
        stop(proc)
    shutil.rmtree(work, ignore_errors=True)
    results = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    report(results, runtimes, args)


def report(r: dict[str, float], runtimes: dict[str, str | None], args: argparse.Namespace) -> None:
    rows = [
        "| system | passages/s | vs bare CrossEncoder | one-client p50 (100 passages) |",
        "|---|---:|---:|---:|",
        f"| bare `CrossEncoder.predict`, batch {BATCH} | {r['bare']:.0f} | 1.00x | "
        f"{r['bare_p50'] * 1e3:.1f} ms |",
    ]
    for name in EXPERTS:
        key = f"corral-{name}"
        rows.append(
            f"| corral over HTTP, `{name}` (served: {runtimes.get(name)}) | {r[key]:.0f} | "
            f"{r[key] / r['bare']:.2f}x | {r[key + '_p50'] * 1e3:.1f} ms |"
        )
    best = max((f"corral-{n}" for n in EXPERTS), key=lambda k: r[k])
    write_section(
        "rerank_throughput",
        f"""
## Rerank throughput (`bench/rerank_throughput.py`)

One query x {PASSAGES} passages (20-60 words, 30-80 tokens) per request, {CLIENTS} concurrent connections (wrk,
{args.seconds} s each after a 3 s warm-up); a MiniLM-L6-sized BERT cross-encoder, random-init
(no package ships a trained one; speed does not depend on the weights); {machine()};
medians of {args.rounds} alternating rounds. The bare call scores the same {PASSAGES} pairs
one call at a time in this process.

{chr(10).join(rows)}

- corral's fastest / the bare batched CrossEncoder call: **{r[best] / r["bare"]:.2f}x**
  (`{best.removeprefix("corral-")}`, served: {runtimes.get(best.removeprefix("corral-"))}).
- A request takes most of a second here, so an {args.seconds} s wrk window holds few of them:
  the rates move in steps of about 10%; the p50 column is the finer measure.
- "served" is what `/v1/models` reported: the accuracy guard refuses an export whose
  ranking of its fixed sample differs from torch's, and on random weights bf16 or int8
  often does (near-tied scores); torch then serves.
""",
    )


if __name__ == "__main__":
    main()
