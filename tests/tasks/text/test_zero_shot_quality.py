"""Zero-shot accuracy on a BBC News subset through the arbitrary-label API (default config).

The full-corpus number lives in BENCHMARKS.md (bench/zero_shot_bbc.py); this subset
guards against regressions in the scoring path.
"""

from __future__ import annotations

import httpx

from corral.eval.datasets import BBC_LABELS, bbc_news
from tests._server import RunningServer


def test_bbc_news_subset_accuracy(default_server: RunningServer) -> None:
    articles = bbc_news(per_class=12)
    labels = sorted(set(BBC_LABELS.values()))
    correct = 0
    for start in range(0, len(articles), 20):
        chunk = articles[start : start + 20]
        reply = httpx.post(
            default_server.v1 + "/classify",
            json={"input": [a.text[:2000] for a in chunk], "labels": labels},
            timeout=120,
        )
        assert reply.status_code == 200, reply.text
        correct += sum(
            d["label"] == a.label for d, a in zip(reply.json()["data"], chunk, strict=True)
        )
    accuracy = correct / len(articles)
    assert accuracy >= 0.6, f"zero-shot accuracy {accuracy:.2f} on {len(articles)} BBC articles"
