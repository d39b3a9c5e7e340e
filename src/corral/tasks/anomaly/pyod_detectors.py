"""pyod detectors (IForest, ECOD, COPOD, HBOS, PCA) behind corral's anomaly API.

pyod's models hold sklearn estimators, which only pickle; corral stores no pickle. A
fitted pyod detector is therefore stored as what it was fitted on (the standardised
rows) with its algorithm, parameters and seed, and refitted on load: the same rows, the
same seed and the same single-threaded fit give the same model, so scores after a
restart equal those before it (the test checks this).

ECOD and COPOD are transductive in pyod: ``decision_function`` recomputes its empirical
CDFs over the fit rows *plus every row being scored*, so a row's score depends on the
rows sent beside it (200 malignant rows scored together hide each other: COPOD's AUC on
breast cancer fell from 0.95 to 0.87 here). Scoring each row alone through pyod gives the
right answer but costs a sort of the fit rows per row (about 60 ms a row at 10k fit
rows). corral therefore scores them *inductively*: the exact formula pyod applies to one
query row (its tail probabilities among the fit rows and itself, combined by the fit
rows' skewness), from the fit rows sorted once, O(features x log rows) per row. One
difference: the skewness that picks each column's tail is the fit rows' (pyod's includes
the query row, which can flip only the sign of a column whose skewness is about 0). The
test checks the scores against pyod's own single-row ``decision_function``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from corral.errors import InvalidRequest
from corral.experts.base import require
from corral.tasks.anomaly.expert import AnomalyExpert

__all__ = ["ALGORITHMS", "PyodDetector"]

# algorithm -> (module, class, the FitOptions it takes besides ``seed``)
ALGORITHMS: Mapping[str, tuple[str, str, frozenset[str]]] = {
    "IForest": ("pyod.models.iforest", "IForest", frozenset({"n_estimators", "max_samples"})),
    "ECOD": ("pyod.models.ecod", "ECOD", frozenset()),
    "COPOD": ("pyod.models.copod", "COPOD", frozenset()),
    "HBOS": ("pyod.models.hbos", "HBOS", frozenset({"n_bins"})),
    "PCA": ("pyod.models.pca", "PCA", frozenset({"n_components"})),
}


def _parameters(
    algorithm: str, options: Mapping[str, Any], rows: int, features: int
) -> dict[str, Any]:
    """pyod constructor arguments from corral's options, clipped to what the data allows
    (sklearn warns, and the test suite makes warnings errors, when asked for more)."""
    seed = int(options.get("seed", 0))
    if algorithm == "IForest":
        samples = options.get("max_samples")
        return {
            "n_estimators": int(options.get("n_estimators", 100)),
            "max_samples": min(int(samples), rows) if samples else min(256, rows),
            "random_state": seed,
            "n_jobs": 1,
        }
    if algorithm == "HBOS":
        return {"n_bins": int(options.get("n_bins", 10))}
    if algorithm == "PCA":
        components = options.get("n_components")
        if components is not None and components > min(rows, features):
            raise InvalidRequest(
                f"options.n_components is {components}; this data allows at most "
                f"{min(rows, features)} (rows and features)",
                param="options.n_components",
            )
        # the rows are standardised already
        return {"n_components": components, "random_state": seed, "standardization": False}
    return {}


class PyodDetector(AnomalyExpert):
    """Detect anomalous rows with a pyod detector (IForest, ECOD, COPOD, HBOS or PCA)."""

    backend = "pyod"
    uses_torch = False  # its own worker thread: a long fit does not hold up torch experts

    @property
    def algorithm(self) -> str:
        return self._algorithm

    def load_backend(self) -> None:
        require("pyod", "anomaly")
        model = self.context.spec.model
        implied = model.removeprefix("pyod/") if model.startswith("pyod/") else "IForest"
        name = str(self.context.options.get("algorithm") or implied)
        if name not in ALGORITHMS:
            raise ValueError(f"options.algorithm must be one of {', '.join(ALGORITHMS)}: {name!r}")
        self._algorithm = name
        self.accepted = frozenset({"seed", *ALGORITHMS[name][2]})

    def _build(self, algorithm: str, parameters: dict[str, Any], contamination: float) -> Any:
        module, cls, _ = ALGORITHMS[algorithm]
        return getattr(importlib.import_module(module), cls)(
            contamination=contamination, **parameters
        )

    def fit_model(
        self, rows: np.ndarray, options: dict[str, Any], contamination: float
    ) -> tuple[Any, np.ndarray]:
        parameters = _parameters(self.algorithm, options, *rows.shape)
        options["pyod"] = parameters  # what the refit on load uses
        detector = self._build(self.algorithm, parameters, contamination)
        with np.errstate(all="ignore"):
            detector.fit(rows)
        scores = np.asarray(detector.decision_scores_, dtype=np.float64)
        if self.algorithm in _TAIL_ALGORITHMS:
            return _TailScorer(rows, copula=self.algorithm == "COPOD"), scores
        return detector, scores

    def score_model(self, model: Any, rows: np.ndarray) -> np.ndarray:
        if isinstance(model, _TailScorer):
            return model.score(rows)
        with np.errstate(all="ignore"):
            return np.asarray(model.decision_function(rows), dtype=np.float64)

    def restore_model(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Any:
        algorithm, rows = str(meta["algorithm"]), arrays["fit_rows"]
        if algorithm in _TAIL_ALGORITHMS:  # scored from the fit rows alone: nothing to refit
            return _TailScorer(rows, copula=algorithm == "COPOD")
        detector = self._build(
            algorithm, dict(meta["options"]["pyod"]), float(meta["contamination"])
        )
        with np.errstate(all="ignore"):
            detector.fit(rows)
        return detector

    def model_arrays(self, model: Any, rows: np.ndarray) -> dict[str, np.ndarray]:
        return {"fit_rows": rows}


_TAIL_ALGORITHMS = frozenset({"ECOD", "COPOD"})


class _TailScorer:
    """ECOD / COPOD scores of rows each taken alone against the fit rows (see the module
    docstring): pyod's formula with the fit rows' ECDFs, computed by binary search."""

    def __init__(self, fit_rows: np.ndarray, *, copula: bool) -> None:
        from scipy.stats import skew

        self.sorted = np.sort(fit_rows, axis=0)
        self.copula = copula
        with np.errstate(all="ignore"):
            self.skew_sign = np.nan_to_num(np.sign(skew(fit_rows, axis=0)))

    def score(self, rows: np.ndarray) -> np.ndarray:
        n = len(self.sorted)
        at_most = np.empty(rows.shape)
        at_least = np.empty(rows.shape)
        for j in range(rows.shape[1]):  # the row itself counts, as in pyod's column_ecdf
            column = self.sorted[:, j]
            at_most[:, j] = np.searchsorted(column, rows[:, j], side="right") + 1
            at_least[:, j] = n - np.searchsorted(column, rows[:, j], side="left") + 1
        left = -np.log(at_most / (n + 1))
        right = -np.log(at_least / (n + 1))
        skewed = left * -np.sign(self.skew_sign - 1) + right * np.sign(self.skew_sign + 1)
        if self.copula:
            combined = np.maximum(skewed, (left + right) / 2)
        else:
            combined = np.maximum(skewed, np.maximum(left, right))
        return np.asarray(combined.sum(axis=1), dtype=np.float64)
