"""The difficulty router: which of a ladder of LLMs (cheapest first) answers a chat
request, learned from examples.

Trained on prompts labelled with the cheapest expert whose answer was good enough
(``small``/``large`` for a ladder of two), over the embedder's vectors. Each rung of the
ladder is one binary question, "harder than this expert?", fitted on the same prompts:
two plain baselines, logistic regression and k-nearest-neighbours (share of harder
prompts among the k nearest), and the one with the better cross-validated ROC AUC is
kept: anything fancier would have to beat both. Each rung's threshold is set so that a
target share of prompts climb past it, as RouteLLM calibrates its routers. A request
goes to the first expert predicted capable of it (``DifficultyLadder.pick``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from corral.errors import ConfigError

__all__ = ["DifficultyLadder", "DifficultyModel", "LadderPick", "fit_difficulty", "fit_ladder"]

_K = 10


@dataclass
class DifficultyModel:
    """One rung, fitted: higher score = harder prompt; ``score >= threshold`` -> past it
    (for two LLMs: to the large one)."""

    kind: Literal["logistic", "knn"]
    threshold: float
    large_share: float  # the target it was fitted for: the share sent past this rung
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


# each class needs this many prompts for the 5-fold cross-validation
_MIN_PER_CLASS = 5


def fit_ladder(
    vectors: np.ndarray, tiers: np.ndarray, experts: list[str], shares: list[float]
) -> list[DifficultyModel]:
    """One rung per expert but the last: rung ``i`` learns "harder than ``experts[i]``"
    (``tiers > i``, where a prompt's tier is the index of its cheapest capable expert)
    and sends ``shares[i]`` of the prompts past it."""
    rungs = []
    for i, share in enumerate(shares):
        harder = (tiers > i).astype(int)
        counts = int(harder.sum()), int(len(harder) - harder.sum())
        if min(counts) < _MIN_PER_CLASS:
            raise ValueError(
                f"the rung past {experts[i]!r} needs at least {_MIN_PER_CLASS} prompts "
                f"labelled with it or a cheaper expert and {_MIN_PER_CLASS} with a dearer "
                f"one; got {counts[1]} and {counts[0]}"
            )
        rungs.append(fit_difficulty(vectors, harder, share))
    return rungs


@dataclass(frozen=True)
class LadderPick:
    """The difficulty router's choice, why, and what it compared (for the trace)."""

    expert: str
    reason: str
    score: float  # the deciding rung's
    scores: dict[str, Any]


@dataclass(frozen=True)
class DifficultyLadder:
    """The experts, cheapest first, and the fitted rungs between them."""

    experts: list[str]
    rungs: list[DifficultyModel]

    @classmethod
    def fitted(cls, experts: list[str], rungs: list[DifficultyModel]) -> DifficultyLadder:
        """A fit for a ladder of another length is a config error: fit it again."""
        if len(rungs) != len(experts) - 1:
            raise ConfigError(
                [
                    f"routing.difficulty has {len(experts)} experts, so {len(experts) - 1} "
                    f"rungs, but the fitted router has {len(rungs)}: run "
                    "`corral route fit CONFIG DATA --difficulty` again"
                ]
            )
        return cls(list(experts), list(rungs))

    def pick(self, vector: np.ndarray) -> LadderPick:
        """The first expert predicted capable of the unit-length ``vector``: the one
        below the first rung it scores under (past every rung: the last expert)."""
        scores = [float(rung.score(vector[None, :])[0]) for rung in self.rungs]
        index = next(
            (i for i, (s, r) in enumerate(zip(scores, self.rungs, strict=True)) if s < r.threshold),
            len(self.rungs),
        )
        steps = [
            f"past {name}: {s:.3f} {'>=' if s >= r.threshold else '<'} {r.threshold:.3f}"
            for name, r, s in zip(self.experts, self.rungs, scores, strict=False)
        ][: index + 1]
        first = self.rungs[0]
        fit = f"{first.kind}, fitted for {first.large_share:.0%} past {self.experts[0]}"
        return LadderPick(
            self.experts[index],
            f"difficulty {'; '.join(steps)} ({fit}): {self.experts[index]} is the cheapest capable",
            scores[min(index, len(scores) - 1)],
            {
                "experts": self.experts,
                "difficulty": [round(s, 4) for s in scores],
                "thresholds": [round(r.threshold, 4) for r in self.rungs],
            },
        )
