"""Semantic routes: send a request to the route whose example utterances it resembles.

Examples are embedded once (on first use) into one normalised matrix; a request costs
one embedding plus one matrix-vector product, and a route's score is its best example's
cosine similarity. The best route wins if it clears its own threshold; otherwise no
route matches and the request goes on to the next stage of the router.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from corral.config import RouteConfig

__all__ = ["RouteMatch", "SemanticRouter"]

Embed = Callable[[list[str]], Awaitable[np.ndarray]]


@dataclass(frozen=True)
class RouteMatch:
    """The best-scoring route for a text, whether or not it cleared its threshold."""

    route: RouteConfig
    score: float
    embed_seconds: float
    decide_seconds: float

    @property
    def accepted(self) -> bool:
        return self.score >= self.route.threshold


class SemanticRouter:
    def __init__(self, routes: list[RouteConfig], embed: Embed) -> None:
        if not routes:
            raise ValueError("a semantic router needs at least one route")
        self.routes = routes
        self._embed = embed
        self._examples: np.ndarray | None = None  # (n_examples, dim), rows unit length
        # examples are stored route by route; a route's rows start at its offset
        self._offsets = np.cumsum([0] + [len(r.examples) for r in routes[:-1]])
        self._lock = asyncio.Lock()

    async def _example_matrix(self) -> np.ndarray:
        if self._examples is None:
            async with self._lock:
                if self._examples is None:
                    texts = [text for route in self.routes for text in route.examples]
                    self._examples = _unit_rows(await self._embed(texts))
        return self._examples

    async def match(self, text: str) -> RouteMatch:
        """Score ``text`` against every route; the caller checks ``accepted``."""
        examples = await self._example_matrix()
        started = time.perf_counter()
        query = _unit_rows(await self._embed([text]))[0]
        embedded = time.perf_counter()
        best, score = self.decide(query, examples)
        return RouteMatch(
            self.routes[best], score, embedded - started, time.perf_counter() - embedded
        )

    def decide(self, query: np.ndarray, examples: np.ndarray) -> tuple[int, float]:
        """(route index, score) of the best route for a unit-length query vector."""
        per_route = np.maximum.reduceat(examples @ query, self._offsets)
        # prefer the route that clears its threshold by the widest margin
        margins = per_route - np.array([r.threshold for r in self.routes])
        best = int(np.argmax(margins))
        return best, float(per_route[best])


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
