"""``corral eval --routing``: how well a config's chat router picks the expert.

Input: JSONL lines ``{"text": ..., "expert": ...}``, the expert a chat message should
reach (a semantic route's target, or the coordinator LLM for everything else). The
config's router is rebuilt in-process with only its embedder loaded, and each message
goes through the same stages ``model: "auto"`` uses (``routing_text`` of the
instruction, semantic routes, else the coordinator), so no LLM runs. The report has the
accuracy, a confusion matrix per stage (which stage decided, what it chose against what
was expected), and the baseline: a k-nearest-neighbour vote over labelled examples
(``knn_baseline``), which the shipped development set compares on held-out halves.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from corral._vectors import unit_rows
from corral.config import Task
from corral.errors import InvalidRequest
from corral.routing.calibration import best_f1_threshold

if TYPE_CHECKING:
    from corral.routing import Router

__all__ = [
    "RoutedItem",
    "RoutingReport",
    "dev_set",
    "fit_thresholds",
    "knn_baseline",
    "read_routing",
    "route_items",
    "split",
]


@dataclass(frozen=True)
class RoutedItem:
    text: str
    expert: str


@dataclass
class RoutingReport:
    """Predictions of one method on a set, and their accuracy and confusion matrices."""

    method: str
    truth: list[str]
    predicted: list[str]
    stages: list[str]
    seconds: float = 0.0
    labels: list[str] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        hits = sum(t == p for t, p in zip(self.truth, self.predicted, strict=True))
        return hits / len(self.truth) if self.truth else 0.0

    def confusion(self) -> dict[str, dict[str, dict[str, int]]]:
        """stage -> expected expert -> predicted expert -> count."""
        table: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
        for t, p, s in zip(self.truth, self.predicted, self.stages, strict=True):
            table[s][t][p] += 1
        return {s: {t: dict(c) for t, c in rows.items()} for s, rows in table.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "items": len(self.truth),
            "accuracy": round(self.accuracy, 4),
            "ms_per_item": round(1000 * self.seconds / max(1, len(self.truth)), 3),
            "confusion": self.confusion(),
        }


def read_routing(path: Path) -> list[RoutedItem]:
    """Parse the JSONL; a bad line is reported with its number."""
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            items.append(RoutedItem(str(row["text"]), str(row["expert"])))
        except (ValueError, KeyError, TypeError):
            raise InvalidRequest(
                f'{path}:{number}: expected {{"text": ..., "expert": ...}}', param="data"
            ) from None
    if not items:
        raise InvalidRequest(f"{path} has no items", param="data")
    return items


def dev_set() -> list[RoutedItem]:
    """The development set shipped with corral, labelled for the built-in default's
    experts: many phrasings per family, off-topic and ambiguous messages (-> ``fast``)."""
    text = resources.files("corral.eval").joinpath("data/routing_dev.jsonl").read_text("utf-8")
    return [RoutedItem(r["text"], r["expert"]) for r in map(json.loads, text.splitlines())]


def split(items: list[RoutedItem], seed: int = 0) -> tuple[list[RoutedItem], list[RoutedItem]]:
    """Two halves, stratified by expert, for fitting (the baseline) and measuring."""
    by_expert: dict[str, list[RoutedItem]] = defaultdict(list)
    for item in items:
        by_expert[item.expert].append(item)
    rng = random.Random(seed)
    first: list[RoutedItem] = []
    second: list[RoutedItem] = []
    for group in by_expert.values():
        shuffled = group[:]
        rng.shuffle(shuffled)
        half = len(shuffled) // 2
        first += shuffled[:half]
        second += shuffled[half:]
    return first, second


def _routing_text(text: str) -> str:
    from corral.routing.extract import routing_text
    from corral.routing.router import split_quoted

    return routing_text(split_quoted(text)[0])


async def route_items(
    router: Router, items: list[RoutedItem], thresholds: dict[str, float] | None = None
) -> RoutingReport:
    """Each message through the router's chat routing stages (the embedder only);
    ``thresholds`` (route name -> threshold) replace the config's."""
    coordinator = router.runtime.find(Task.CHAT, router.config.coordinator).name
    truth, predicted, stages = [], [], []
    started = time.perf_counter()
    for item in items:
        chosen, stage = coordinator, "coordinator"
        if router.semantic is not None:
            match = await router.semantic.match(_routing_text(item.text))
            threshold = (thresholds or {}).get(match.route.name, match.route.threshold)
            if match.score >= threshold:
                chosen, stage = match.route.target, "semantic"
        truth.append(item.expert)
        predicted.append(chosen)
        stages.append(stage)
    return RoutingReport("corral routes", truth, predicted, stages, time.perf_counter() - started)


async def fit_thresholds(router: Router, train: list[RoutedItem]) -> dict[str, float]:
    """Per route, the threshold with the best F1 on ``train`` (what ``corral route fit
    --routes`` learns), scored exactly as ``route_items`` scores."""
    assert router.semantic is not None
    matches = [await router.semantic.match(_routing_text(i.text)) for i in train]
    names = np.array([m.route.name for m in matches])
    scores = np.array([m.score for m in matches])
    expected = np.array([i.expert for i in train])
    return {
        route.name: best_f1_threshold(scores, names == route.name, expected == route.target)
        for route in router.semantic.routes
    }


async def knn_baseline(
    router: Router, train: list[RoutedItem], test: list[RoutedItem], k: int = 5
) -> RoutingReport:
    """A k-nearest-neighbour vote over ``train``'s embedded messages (no thresholds,
    no instruction/passage split): what the labelled examples alone give."""
    train_vectors = unit_rows(await router.embed([i.text for i in train]))
    started = time.perf_counter()
    test_vectors = unit_rows(await router.embed([i.text for i in test]))
    similarity = test_vectors @ train_vectors.T
    predicted = []
    for row in similarity:
        nearest = np.argsort(-row)[:k]
        votes: dict[str, float] = defaultdict(float)
        for j in nearest:
            votes[train[j].expert] += float(row[j])
        predicted.append(max(votes, key=lambda e: votes[e]))
    seconds = time.perf_counter() - started
    truth = [i.expert for i in test]
    method = f"kNN over examples (k={k})"
    return RoutingReport(method, truth, predicted, ["knn"] * len(test), seconds)
