"""Zero-shot classification accuracy on the full BBC News corpus (2,225 articles, 5 topics).

Sends every article through ``POST /v1/classify`` with the labels given per request (the
arbitrary-label API), against `corral serve` on the built-in default config, and
writes accuracy, per-topic recall and throughput into BENCHMARKS.md.

    python bench/zero_shot_bbc.py [--per-class N]
"""

from __future__ import annotations

import argparse
import collections
import time

import httpx
from _harness import free_port, machine, start, stop, write_section

from corral.eval.datasets import BBC_LABELS, bbc_news

CHUNK = 16


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-class", type=int, default=None)
    args = parser.parse_args()
    articles = bbc_news(per_class=args.per_class)
    labels = sorted(set(BBC_LABELS.values()))
    port = free_port()
    import sys

    proc = start(
        [
            sys.executable,
            "-m",
            "corral.cli",
            "serve",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        f"http://127.0.0.1:{port}/readyz",
    )
    hits: collections.Counter[str] = collections.Counter()
    totals: collections.Counter[str] = collections.Counter()
    try:
        started = time.perf_counter()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/v1", timeout=300) as client:
            for i in range(0, len(articles), CHUNK):
                chunk = articles[i : i + CHUNK]
                reply = client.post(
                    "/classify",
                    json={
                        "model": "classifier",
                        "labels": labels,
                        "input": [a.text for a in chunk],
                    },
                )
                reply.raise_for_status()
                for data, article in zip(reply.json()["data"], chunk, strict=True):
                    totals[article.label] += 1
                    hits[article.label] += data["label"] == article.label
        elapsed = time.perf_counter() - started
    finally:
        stop(proc)
    accuracy = sum(hits.values()) / len(articles)
    recall = " · ".join(f"{lb} {hits[lb] / totals[lb]:.2f}" for lb in labels)
    print(f"accuracy {accuracy:.3f} on {len(articles)} articles; {recall}")
    write_section(
        "zero_shot_bbc",
        f"""
## Zero-shot classification, BBC News (`bench/zero_shot_bbc.py`)

Built-in default classifier (all-MiniLM-L6-v2, similarity to "This text is about
{{label}}."), labels {labels} given in each request, {len(articles)} articles
(articles longer than the model's 256 tokens are truncated); {machine()}.

- **accuracy {accuracy:.3f}** (chance: 0.20); per-topic recall: {recall}
- {len(articles) / elapsed:.1f} articles/s over HTTP, {CHUNK} articles per request

An NLI cross-encoder (e.g. the founding config's `facebook/bart-large-mnli`, `backend: nli`)
is the stronger zero-shot option where its weights are available; no package ships one.
""",
    )


if __name__ == "__main__":
    main()
