"""The accuracy guard: a converted or quantised encoder is served only if it agrees with
its original.

An int8 or ONNX copy of a model is faster, but nothing says it still means the same: a
bad export or a too-aggressive quantisation gives vectors that look fine and rank
wrongly. On load, both encode one fixed sample; the copy is refused below
``MIN_COSINE`` (the worst per-text cosine to the original's vector) or when any query's
nearest passage changes (top-1 on a small retrieval sample).

Cross-encoders (``compare_scores``) score every sample query with every sample passage:
the copy is refused when any query's top passage changes or its ranking of the passages
correlates with the original's below ``MIN_SPEARMAN`` (Spearman per query, over the 8
passages: one swap of two neighbours below the top still passes at 0.976).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MIN_COSINE",
    "MIN_SPEARMAN",
    "SAMPLE_PASSAGES",
    "SAMPLE_QUERIES",
    "GuardResult",
    "ScoreGuardResult",
    "compare",
    "compare_scores",
]

# int8 MiniLM measures 0.9995 against fp32 torch; 0.99 still refuses a broken export
# (a random or mismatched model is far below 0.5)
MIN_COSINE = 0.99
MIN_SPEARMAN = 0.95

SAMPLE_QUERIES = (
    "How do I reset my password?",
    "What will the weather be like tomorrow?",
    "Who won the football match?",
    "How do quantum computers work?",
    "When is the invoice due?",
    "How do I bake a chocolate cake?",
)
SAMPLE_PASSAGES = (
    "To change a forgotten password, open Settings and choose 'Reset password'.",
    "Tomorrow will be sunny and warm with a light breeze in the afternoon.",
    "The home team won the final 2-1 after a late goal in extra time.",
    "Quantum computers use qubits, which can hold superpositions of 0 and 1.",
    "Please pay the attached invoice within 30 days, by the end of the month.",
    "Mix flour, cocoa, sugar and eggs, then bake for 35 minutes at 180 degrees.",
    "Stock markets fell sharply on Monday as investors worried about rates.",
    "The cat slept on the warm windowsill all afternoon.",
)

Encode = Callable[[list[str]], np.ndarray]
Score = Callable[[list[tuple[str, str]]], np.ndarray]


@dataclass(frozen=True)
class GuardResult:
    min_cosine: float
    top1_changed: int  # queries whose nearest passage differs from the original's
    passed: bool

    def describe(self) -> str:
        return (
            f"worst cosine to the original {self.min_cosine:.4f} (needs >= {MIN_COSINE}), "
            f"{self.top1_changed} of {len(SAMPLE_QUERIES)} queries' top-1 passage changed"
        )


def compare(converted: Encode, original: Encode) -> GuardResult:
    """Encode the fixed sample with both and judge the converted one."""
    texts = [*SAMPLE_QUERIES, *SAMPLE_PASSAGES]
    ours, theirs = _unit(converted(texts)), _unit(original(texts))
    if ours.shape != theirs.shape:
        return GuardResult(0.0, len(SAMPLE_QUERIES), False)
    cosine = float(np.min(np.sum(ours * theirs, axis=1)))
    queries = len(SAMPLE_QUERIES)
    changed = int(np.sum(_top1(ours, queries) != _top1(theirs, queries)))
    return GuardResult(cosine, changed, cosine >= MIN_COSINE and changed == 0)


def _top1(vectors: np.ndarray, queries: int) -> np.ndarray:
    return np.argmax(vectors[:queries] @ vectors[queries:].T, axis=1)  # type: ignore[no-any-return]


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        return vectors.reshape(len(vectors), -1)
    return vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)


@dataclass(frozen=True)
class ScoreGuardResult:
    min_spearman: float  # the worst query's rank correlation with the original's ranking
    max_score_diff: float  # the largest |score - original's score| (reported, not judged)
    top1_changed: int
    passed: bool

    def describe(self) -> str:
        return (
            f"worst per-query Spearman to the original {self.min_spearman:.4f} (needs >= "
            f"{MIN_SPEARMAN}), largest score difference {self.max_score_diff:.2e}, "
            f"{self.top1_changed} of {len(SAMPLE_QUERIES)} queries' top-1 passage changed"
        )


def compare_scores(converted: Score, original: Score) -> ScoreGuardResult:
    """Score every sample (query, passage) pair with both and judge the converted one."""
    pairs = [(q, p) for q in SAMPLE_QUERIES for p in SAMPLE_PASSAGES]
    shape = (len(SAMPLE_QUERIES), len(SAMPLE_PASSAGES))
    ours = np.asarray(converted(pairs), dtype=np.float64)
    theirs = np.asarray(original(pairs), dtype=np.float64)
    if ours.size != theirs.size or ours.size != len(pairs):
        return ScoreGuardResult(0.0, float("inf"), len(SAMPLE_QUERIES), False)
    ours, theirs = ours.reshape(shape), theirs.reshape(shape)
    spearman = min(_spearman(a, b) for a, b in zip(ours, theirs, strict=True))
    changed = int(np.sum(np.argmax(ours, axis=1) != np.argmax(theirs, axis=1)))
    diff = float(np.max(np.abs(ours - theirs)))
    return ScoreGuardResult(spearman, diff, changed, spearman >= MIN_SPEARMAN and changed == 0)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation: Pearson's r of the ranks (float scores have no ties to share)."""
    ranks_a, ranks_b = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])
