"""How good is corral's LLM-only counterfactual? The same BBC News items classified by the
small classifier (priced, with its counterfactual) and by the LLM itself (priced from what
it really took), side by side in one server run.

The counterfactual is an estimate: tokens from text length, LLM speed from probe calls.
This compares it with the LLM's actual cost on the same items, and reports what the small
expert saved against the measured LLM cost, not just against the estimate.

    python bench/cost_counterfactual.py [--items N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import httpx
from _harness import corral_command, free_port, machine, start, stop, write_section

from corral.eval.datasets import bbc_news

CONFIG = """
models:
  - name: fast
    model: HuggingFaceTB/SmolLM2-135M-Instruct
    default: true
  - name: classifier
    model: sentence-transformers/all-MiniLM-L6-v2
    task: classify
observe: {{usage_db: {db}}}
"""
LABELS = ["business", "entertainment", "politics", "sport", "tech"]


def classify_each(url: str, model: str, texts: list[str]) -> list[dict[str, object]]:
    """One request per item; returns each request's trace."""
    traces = []
    with httpx.Client(timeout=120) as client:
        for text in texts:
            reply = client.post(
                url + "/v1/classify", json={"model": model, "input": [text], "labels": LABELS}
            )
            reply.raise_for_status()
            trace_id = reply.headers["x-corral-trace-id"]
            traces.append(client.get(f"{url}/v1/traces/{trace_id}").json())
    return traces


def total(traces: list[dict[str, object]], key: str) -> float:
    return sum(float(t[key] or 0.0) for t in traces)  # type: ignore[arg-type]


def tokens(traces: list[dict[str, object]]) -> tuple[int, int]:
    charges = [c for t in traces for c in t["charges"]]  # type: ignore[attr-defined]
    return sum(c["tokens_in"] for c in charges), sum(c["tokens_out"] for c in charges)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=40)
    args = parser.parse_args()
    per_class = max(1, args.items // len(LABELS))
    texts = [a.text[:300] for a in bbc_news(per_class=per_class)]

    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "cost.yaml"
        config.write_text(CONFIG.format(db=Path(tmp) / "usage.sqlite"))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start(corral_command(config, port), url + "/readyz")
        try:
            small = classify_each(url, "classifier", texts)
            llm = classify_each(url, "fast", texts)
        finally:
            stop(proc)

    estimated = total(small, "counterfactual_cost")
    small_cost, llm_cost = total(small, "cost"), total(llm, "cost")
    est_in = sum(t["llm_tokens"][0] for t in small)  # type: ignore[index]
    est_out = sum(t["llm_tokens"][1] for t in small)  # type: ignore[index]
    real_in, real_out = tokens(llm)
    n = len(texts)
    rows = [
        ("classifier (MiniLM zero-shot)", small_cost, "-"),
        ("its counterfactual: SmolLM2 alone, estimated", estimated, f"{est_in}/{est_out}"),
        ("SmolLM2 as the classifier, measured", llm_cost, f"{real_in}/{real_out}"),
    ]
    table = "\n".join(f"| {name} | {cost / n:.3g} | {tok} |" for name, cost, tok in rows)
    body = f"""
## Cost counterfactual vs the LLM's measured cost (`bench/cost_counterfactual.py`)

{n} BBC News articles (first 300 characters, 5 labels), one `/v1/classify` request each,
first to the zero-shot classifier, then to SmolLM2-135M as the classifier (the cascade's
enum-grammar LLM stage), through one `corral serve` run; prices are the defaults
(`observe.prices.cpu_hour: 0.10`). {machine()}.

| route | cost per item | LLM tokens in/out (all items) |
|---|---:|---:|
{table}

- Counterfactual estimate / measured LLM cost: **{estimated / llm_cost:.2f}x**
  (tokens read estimated at {est_in / max(real_in, 1):.2f}x and written at
  {est_out / max(real_out, 1):.2f}x what the LLM really read and wrote).
- The classifier against the measured LLM: **{llm_cost / small_cost:.1f}x cheaper**
  (against the estimate: {estimated / small_cost:.1f}x).
"""
    write_section("cost-counterfactual", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
