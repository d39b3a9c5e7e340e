"""Calibrated confidence for cascades, and the fitted state ``corral route fit`` saves.

A classifier's top score is not a probability of being right. Temperature scaling
(Guo et al., 2017) fits one number T on labelled data so that ``softmax(log p / T)``
is; the cascade threshold is then chosen on the calibrated confidences, to hit either
a target escalation rate (the fraction of items passed to the next, costlier stage) or
a target accuracy of the items the first stage keeps. The same idea as RouteLLM's
threshold calibration, applied to any classifier.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from corral._atomic import write_atomic
from corral.routing.difficulty import DifficultyModel

__all__ = [
    "CascadeFit",
    "FittedRouting",
    "best_f1_threshold",
    "calibrated",
    "fit_isotonic",
    "fit_temperature",
    "fitted_path",
    "threshold_for_accuracy",
    "threshold_for_escalation",
]


def calibrated(scores: np.ndarray, temperature: float) -> np.ndarray:
    """Rows of class probabilities rescaled by ``temperature`` (1.0 leaves them as they are)."""
    logits = np.log(np.clip(scores, 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    exp = np.exp(logits)
    return np.asarray(exp / exp.sum(axis=-1, keepdims=True))


def fit_temperature(scores: np.ndarray, gold: np.ndarray) -> float:
    """The temperature minimising the negative log-likelihood of the gold classes
    (a log-spaced grid: one parameter, a smooth convex-ish curve, no optimiser needed)."""
    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 241))
    rows = np.arange(len(gold))
    nll = [-np.log(calibrated(scores, t)[rows, gold] + 1e-12).mean() for t in grid]
    return float(grid[int(np.argmin(nll))])


def threshold_for_escalation(confidence: np.ndarray, rate: float) -> float:
    """The threshold below which a fraction ``rate`` of the items fall."""
    return float(np.quantile(confidence, rate, method="higher")) if rate > 0 else 0.0


def threshold_for_accuracy(confidence: np.ndarray, correct: np.ndarray, target: float) -> float:
    """The lowest threshold at which the items kept (confidence >= it) are at least
    ``target`` accurate; 1.0 (keep nothing) when no threshold reaches it. Cuts fall only
    between distinct confidences: tied items (isotonic steps) are kept or passed together."""
    order = np.argsort(-confidence, kind="stable")
    ranked = confidence[order]
    kept_accuracy = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    last_of_tie = np.r_[ranked[1:] < ranked[:-1], True]
    reaching = np.nonzero((kept_accuracy >= target) & last_of_tie)[0]
    if len(reaching) == 0:
        return 1.0
    return float(ranked[reaching[-1]])


def best_f1_threshold(scores: np.ndarray, chosen: np.ndarray, relevant: np.ndarray) -> float:
    """For one semantic route: the threshold on its score that maximises F1 of "routed
    here" (chosen and score >= threshold) against the labels (relevant)."""
    candidates = np.unique(scores[chosen])
    if len(candidates) == 0:
        return 1.0
    total = max(int(relevant.sum()), 1)
    best, best_f1 = float(candidates[-1]), -1.0
    for threshold in candidates:
        routed = chosen & (scores >= threshold)
        tp = int((routed & relevant).sum())
        f1 = 2 * tp / (int(routed.sum()) + total)
        if f1 > best_f1:  # ties keep the lower threshold: more recall at the same F1
            best, best_f1 = float(threshold), f1
    # halfway down to the next score below: the same routing on this data, more margin
    below = scores[chosen & (scores < best)]
    return (best + float(below.max())) / 2 if below.size else best


def fit_isotonic(confidence: np.ndarray, correct: np.ndarray) -> tuple[list[float], list[float]]:
    """A monotone map from confidence to the observed chance of being right (sklearn's
    isotonic regression), as breakpoints for ``np.interp``."""
    from sklearn.isotonic import IsotonicRegression

    model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    model.fit(confidence, correct.astype(float))
    return model.X_thresholds_.tolist(), model.y_thresholds_.tolist()


@dataclass
class CascadeFit:
    """What ``corral route fit`` learned for one cascade's first stage."""

    temperature: float
    threshold: float
    target: str  # e.g. "escalation=0.30" or "accuracy=0.90"
    examples: int
    escalation: float  # on the fit data
    kept_accuracy: float  # accuracy of the items the first stage keeps, on the fit data
    method: str = "temperature"  # or "isotonic" (temperature first, then the monotone map)
    isotonic_x: list[float] = field(default_factory=list)
    isotonic_y: list[float] = field(default_factory=list)

    def confidence(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated confidence of each row of class scores (the top class's)."""
        top = calibrated(scores, self.temperature).max(axis=-1)
        if self.method == "isotonic":
            return np.interp(top, self.isotonic_x, self.isotonic_y)
        return np.asarray(top)


@dataclass
class FittedRouting:
    """Everything ``corral route fit`` learned; JSON on disk (never pickle)."""

    cascades: dict[str, CascadeFit] = field(default_factory=dict)
    difficulty: DifficultyModel | None = None  # the first rung: harder than the cheapest?
    route_thresholds: dict[str, float] = field(default_factory=dict)  # semantic routes
    difficulty_rungs: list[DifficultyModel] = field(default_factory=list)  # the next rungs

    @property
    def ladder(self) -> list[DifficultyModel]:
        """Every rung of the difficulty router, cheapest expert's first."""
        return [self.difficulty, *self.difficulty_rungs] if self.difficulty else []

    @classmethod
    def load(cls, path: Path) -> FittedRouting:
        data = json.loads(path.read_text(encoding="utf-8"))
        cascades = {name: CascadeFit(**fit) for name, fit in data.get("cascades", {}).items()}
        difficulty = data.get("difficulty")
        return cls(
            cascades,
            DifficultyModel(**difficulty) if difficulty else None,
            {str(k): float(v) for k, v in data.get("route_thresholds", {}).items()},
            [DifficultyModel(**rung) for rung in data.get("difficulty_rungs", [])],
        )

    def save(self, path: Path) -> None:
        """Write atomically (temp file + rename): a crash leaves the old file or the new."""
        data = {
            "cascades": {k: asdict(v) for k, v in self.cascades.items()},
            "difficulty": asdict(self.difficulty) if self.difficulty else None,
            "route_thresholds": self.route_thresholds,
            "difficulty_rungs": [asdict(rung) for rung in self.difficulty_rungs],
        }
        write_atomic(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))


def fitted_path(config_path: Path) -> Path:
    """Fitted state lives next to its config: ``corral.yaml`` -> ``corral.fitted.json``."""
    return config_path.with_name(config_path.stem + ".fitted.json")
