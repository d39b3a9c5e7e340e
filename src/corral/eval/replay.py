"""Replay a labelled set through several routes of a running server, side by side.

Each route is a ``model`` value for ``POST /v1/classify``: a classifier ("zero-shot
classifier"), a chat expert ("LLM as classifier") or a cascade. Items go one request
each, as live traffic would, a few at a time; every route sees the same items.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import numpy as np

from corral.eval.datasets import LabelledText

__all__ = ["RouteReport", "replay"]


@dataclass
class RouteReport:
    """Quality, latency and escalation of one route over the whole set."""

    route: str
    accuracy: float
    macro_f1: float
    p50_ms: float
    p95_ms: float
    seconds_per_item: float  # wall time per item, one request each: the cost proxy
    escalated: float  # fraction answered by an expert other than the route's first
    experts: dict[str, int] = field(default_factory=dict)  # who answered how many


async def replay(
    url: str,
    routes: list[str],
    items: list[LabelledText],
    *,
    api_key: str | None = None,
    concurrency: int = 4,
) -> list[RouteReport]:
    labels = sorted({item.label for item in items})
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=600) as client:
        cards = (await client.get("/v1/models")).json()["data"]
        first = {c["id"]: (c.get("stages") or [c["id"]])[0] for c in cards}
        return [
            await _route(client, route, first.get(route, route), items, labels, concurrency)
            for route in routes
        ]


async def _route(
    client: httpx.AsyncClient,
    route: str,
    first_stage: str,
    items: list[LabelledText],
    labels: list[str],
    concurrency: int,
) -> RouteReport:
    gate = asyncio.Semaphore(concurrency)

    async def one(item: LabelledText) -> tuple[str, str, float]:
        async with gate:
            started = time.perf_counter()
            reply = await client.post(
                "/v1/classify", json={"model": route, "input": item.text, "labels": labels}
            )
            seconds = time.perf_counter() - started
        if reply.status_code != 200:
            raise RuntimeError(f"route {route!r}: HTTP {reply.status_code}: {reply.text[:300]}")
        data = reply.json()["data"][0]
        return str(data["label"]), str(data["expert"]), seconds

    started = time.perf_counter()
    answers = await asyncio.gather(*(one(item) for item in items))
    wall = time.perf_counter() - started
    predicted = [label for label, _, _ in answers]
    gold = [item.label for item in items]
    experts = Counter(expert for _, expert, _ in answers)
    latencies = np.array([seconds for _, _, seconds in answers]) * 1000
    return RouteReport(
        route=route,
        accuracy=float(np.mean([p == g for p, g in zip(predicted, gold, strict=True)])),
        macro_f1=_macro_f1(gold, predicted, labels),
        p50_ms=float(np.percentile(latencies, 50)),
        p95_ms=float(np.percentile(latencies, 95)),
        seconds_per_item=wall / max(1, len(items)),
        escalated=1.0 - experts[first_stage] / max(1, len(items)),
        experts=dict(experts),
    )


def _macro_f1(gold: list[str], predicted: list[str], labels: list[str]) -> float:
    scores = []
    for label in labels:
        tp = sum(g == label and p == label for g, p in zip(gold, predicted, strict=True))
        fp = sum(g != label and p == label for g, p in zip(gold, predicted, strict=True))
        fn = sum(g == label and p != label for g, p in zip(gold, predicted, strict=True))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(np.mean(scores))
