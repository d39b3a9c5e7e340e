"""The difficulty router: small or large LLM for a chat request, learned from examples.

Trained on prompts labelled ``small`` (the small LLM's answer was good enough) or
``large`` (it needed the large one), over the embedder's vectors. Two plain baselines are
fitted, logistic regression and k-nearest-neighbours (share of ``large`` among the k
nearest), and the one with the better cross-validated ROC AUC is kept: anything fancier
would have to beat both. The threshold is set so that a target share of prompts go to
the large model, as RouteLLM calibrates its routers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

__all__ = ["DifficultyModel", "fit_difficulty"]

_K = 10


@dataclass
class DifficultyModel:
    """A fitted scorer: higher score = harder prompt; ``score >= threshold`` -> large."""

    kind: Literal["logistic", "knn"]
    threshold: float
    large_share: float  # the target it was fitted for
    auc: dict[str, float] = field(default_factory=dict)  # cross-validated, both baselines
    coef: list[float] = field(default_factory=list)  # logistic
    intercept: float = 0.0
    vectors: list[list[float]] = field(default_factory=list)  # knn: training examples
    labels: list[int] = field(default_factory=list)  # knn: 1 = large

    def score(self, vectors: np.ndarray) -> np.ndarray:
        """Difficulty of each row of unit-length ``vectors`` (0..1)."""
        if self.kind == "logistic":
            logits = vectors @ np.asarray(self.coef) + self.intercept
            return np.asarray(1.0 / (1.0 + np.exp(-logits)))
        return _knn_share(np.asarray(self.vectors), np.asarray(self.labels), vectors)


def _knn_share(train: np.ndarray, labels: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Share of ``large`` among each query's k nearest training prompts (cosine)."""
    similarity = queries @ train.T
    k = min(_K, train.shape[0])
    nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    return np.asarray(labels[nearest].mean(axis=1))


def _cross_validated_scores(vectors: np.ndarray, large: np.ndarray) -> dict[str, np.ndarray]:
    """Out-of-fold scores of both baselines (5 folds), for a fair comparison."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    scores = {"logistic": np.zeros(len(large)), "knn": np.zeros(len(large))}
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    for train, test in folds.split(vectors, large):
        model = LogisticRegression(max_iter=1000).fit(vectors[train], large[train])
        scores["logistic"][test] = model.predict_proba(vectors[test])[:, 1]
        scores["knn"][test] = _knn_share(vectors[train], large[train], vectors[test])
    return scores


def fit_difficulty(vectors: np.ndarray, large: np.ndarray, large_share: float) -> DifficultyModel:
    """Fit both baselines, keep the better by cross-validated AUC, set the threshold so
    that ``large_share`` of the training prompts would go to the large model."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    out_of_fold = _cross_validated_scores(vectors, large)
    auc = {kind: float(roc_auc_score(large, s)) for kind, s in out_of_fold.items()}
    kind: Literal["logistic", "knn"] = "logistic" if auc["logistic"] >= auc["knn"] else "knn"
    threshold = float(np.quantile(out_of_fold[kind], 1.0 - large_share))
    if kind == "logistic":
        model = LogisticRegression(max_iter=1000).fit(vectors, large)
        return DifficultyModel(
            kind,
            threshold,
            large_share,
            auc,
            coef=model.coef_[0].tolist(),
            intercept=float(model.intercept_[0]),
        )
    return DifficultyModel(
        kind, threshold, large_share, auc, vectors=vectors.tolist(), labels=large.tolist()
    )
