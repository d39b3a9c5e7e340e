"""Anomaly detection: learn what "normal" rows look like, then score how far new rows are.

Two operations go through the runtime's one ``submit`` path (so metrics, traces, cost
and the expert's worker thread apply to both):

* ``AnomalyFitInput`` fits a detector on rows (or on the sliding windows of one series)
  and stores it as a new version through the runtime's ``ArtifactStore``;
* ``AnomalyScoreInput`` scores rows against a stored detector. It is the expert's
  ``operation``, so it is also the coordinator's tool schema: a detector name and rows.

Every detector sees standardised features (per-column mean and standard deviation of the
fit data; constant columns get scale 1), clipped to +-1e6 so that absurd inputs still
give finite scores. The threshold is the ``threshold_quantile`` (default
``1 - contamination``) of the fit data's own scores; a row is anomalous above it.

For a series the rows are its windows, so ``contamination`` is the share of anomalous
*windows*, not values: one anomalous value sits in up to ``window`` windows, and each
of them scores high. Given the share of anomalous values instead, the quantile lands
inside the fit data's own anomalies (21 anomalous values of 2,400 made 3.5% of the
windows anomalous in ``bench/anomaly_eval.py``; at contamination 0.01 the threshold was
the fit set's largest spike and no held-out anomaly reached it).

Backends (``anomaly_autoencoder``, ``anomaly_pyod``) implement fitting, scoring and
turning a fitted model into arrays and back; this module does validation, windows,
thresholds, persistence and a bounded in-memory cache of loaded detectors.
"""

from __future__ import annotations

import logging
import time
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from corral.artifacts import ArtifactInfo
from corral.config import Task
from corral.errors import CorralError, ExpertFailed, InvalidRequest
from corral.experts._numeric import finite, float_rows
from corral.experts.fitted import FittedExpert, FittedModels
from corral.experts.operation import Operation
from corral.experts.options import AnomalyOptions
from corral.ownership import OwnedName

__all__ = [
    "ANOMALY_FIT",
    "ANOMALY_SCORE",
    "KIND",
    "AnomalyExpert",
    "AnomalyFitInput",
    "AnomalyScoreInput",
    "FitOptions",
    "FitResult",
    "ScoreResult",
]

log = logging.getLogger("corral.tasks.anomaly.expert")

KIND = "anomaly"  # the ArtifactStore kind detectors are kept under
_CLIP = 1e6  # standardised values beyond this many deviations are clipped
# hard caps of the input models (tool schemas); server.limits sets the configured ones
MAX_ROWS = 1_000_000
MAX_FEATURES = 10_000
MAX_SERIES = 1_000_000

Row = list[float]


class FitOptions(BaseModel):
    """Backend settings for one fit, each bounded; a backend refuses those it has not."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(0, ge=0, le=2**31 - 1, description="Random seed: same data, same model.")
    # autoencoder
    epochs: int | None = Field(None, ge=1, le=2000, description="Most passes over the data.")
    batch_size: int | None = Field(None, ge=1, le=65_536)
    learning_rate: float | None = Field(None, gt=0, le=1)
    hidden: int | None = Field(None, ge=1, le=1024, description="Width of the outer layers.")
    bottleneck: int | None = Field(None, ge=1, le=512, description="Width of the code layer.")
    weight_decay: float | None = Field(None, ge=0, le=1)
    patience: int | None = Field(None, ge=1, le=1000, description="Epochs without improvement.")
    # pyod
    n_estimators: int | None = Field(None, ge=1, le=1000, description="IForest trees.")
    max_samples: int | None = Field(None, ge=2, le=1_000_000, description="IForest subsample.")
    n_bins: int | None = Field(None, ge=2, le=1000, description="HBOS histogram bins.")
    n_components: int | None = Field(None, ge=1, le=MAX_FEATURES, description="PCA components.")


class _Rows(BaseModel):
    """Rows of features, or one series cut into sliding windows: exactly one of them."""

    model_config = ConfigDict(extra="forbid")

    detector: OwnedName
    data: list[list[float]] | None = Field(
        None,
        min_length=1,
        max_length=MAX_ROWS,
        description="Rows of numeric features, every row the same length.",
    )
    series: list[float] | None = Field(
        None,
        min_length=1,
        max_length=MAX_SERIES,
        description="One series, oldest first; scored as its sliding windows.",
    )

    @model_validator(mode="after")
    def _one_input(self) -> _Rows:
        if (self.data is None) == (self.series is None):
            raise ValueError("give exactly one of `data` (rows) or `series` (with a window)")
        return self


class AnomalyScoreInput(_Rows):
    """Score rows against a fitted anomaly detector: higher is more anomalous."""

    version: int | None = Field(None, ge=1, description="Detector version; omitted: the newest.")


class AnomalyFitInput(_Rows):
    """Fit (and store as a new version) a detector of what normal rows look like."""

    window: int | None = Field(
        None, ge=2, le=MAX_FEATURES, description="Window length when fitting on `series`."
    )
    contamination: float | None = Field(
        None,
        gt=0,
        lt=0.5,
        description="Expected share of anomalous rows in the fit data; for `series`, of "
        "windows (one anomalous value makes up to `window` windows anomalous).",
    )
    threshold_quantile: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Quantile of the fit rows' (windows') scores used as threshold "
        "(1 - contamination).",
    )
    options: FitOptions = FitOptions()

    @model_validator(mode="after")
    def _window_with_series(self) -> AnomalyFitInput:
        if self.series is not None and self.window is None:
            raise ValueError("`window` is required with `series`")
        if self.data is not None and self.window is not None:
            raise ValueError("`window` applies to `series` only; rows in `data` are used as given")
        return self


@dataclass(frozen=True)
class FitResult:
    detector: str
    version: int
    expert: str
    backend: str
    algorithm: str
    n_rows: int
    n_features: int
    window: int | None
    threshold: float
    threshold_quantile: float
    fit_seconds: float


@dataclass(frozen=True)
class ScoreResult:
    detector: str
    version: int
    window: int | None
    threshold: float
    scores: list[float]
    is_anomaly: list[bool]


ANOMALY_SCORE = Operation(Task.ANOMALY, AnomalyScoreInput, ScoreResult)
ANOMALY_FIT = Operation(Task.ANOMALY, AnomalyFitInput, FitResult, name="fit")


@dataclass(frozen=True)
class _Job:
    """One request's work: its rows as a matrix (windows already cut)."""

    request: _Rows
    rows: np.ndarray  # float64, [n, features]


@dataclass
class _Loaded:
    """A detector ready to score: the backend's model and how to standardise for it."""

    model: Any
    mean: np.ndarray
    scale: np.ndarray
    info: ArtifactInfo


_Output = FitResult | ScoreResult | CorralError


def _matrix(data: list[list[float]]) -> np.ndarray:
    """Rows as a float matrix; 422 naming the first ragged, empty or non-finite place."""
    return float_rows(data, "data")


def series_windows(series: list[float], window: int) -> np.ndarray:
    """Every window of ``window`` consecutive values (row i covers series[i : i + window])."""
    values = finite(np.asarray(series, dtype=np.float64), "series")
    if len(values) < window:
        raise InvalidRequest(
            f"series has {len(values)} values; the window is {window}", param="series"
        )
    return np.lib.stride_tricks.sliding_window_view(values, window).copy()


def _standardiser(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(all="ignore"):
        mean = rows.mean(axis=0)
        scale = rows.std(axis=0)
    if not (np.isfinite(mean).all() and np.isfinite(scale).all()):
        raise InvalidRequest("data: values too large to standardise (overflow)", param="data")
    scale[scale < 1e-12 * np.maximum(1.0, np.abs(mean))] = 1.0  # constant columns
    return mean, scale


def _standardise(rows: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        z = (rows - mean) / scale
    return np.clip(np.nan_to_num(z, nan=0.0, posinf=_CLIP, neginf=-_CLIP), -_CLIP, _CLIP)


class AnomalyExpert(FittedExpert[_Rows, _Job, _Output, Any]):
    """Shared fit / score / persistence logic; a backend supplies the model itself."""

    options_model = AnomalyOptions
    task = Task.ANOMALY
    operation = ANOMALY_SCORE
    accepted: frozenset[str] = frozenset({"seed"})  # FitOptions this backend takes
    _CONFIG_KEYS: ClassVar[frozenset[str]] = frozenset(
        {"algorithm", "contamination", "cache_size", "threads"}
    )

    # --- what a backend implements ------------------------------------------------------
    @property
    @abstractmethod
    def algorithm(self) -> str:
        """What this expert fits (``autoencoder``, ``IForest``...)."""

    @abstractmethod
    def fit_model(
        self, rows: np.ndarray, options: dict[str, Any], contamination: float
    ) -> tuple[Any, np.ndarray]:
        """Fit on standardised rows; returns the model and the fit rows' own scores."""

    @abstractmethod
    def score_model(self, model: Any, rows: np.ndarray) -> np.ndarray:
        """Scores of standardised rows, higher for more anomalous."""

    @abstractmethod
    def model_arrays(self, model: Any, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Arrays that rebuild ``model`` (no pickle): weights, or the data it was fit on."""

    @abstractmethod
    def restore_model(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Any:
        """The model back from ``model_arrays`` and the manifest."""

    # --- loading ---------------------------------------------------------------------
    def load(self) -> None:
        options = self.context.options
        self.defaults = FitOptions.model_validate(
            {k: v for k, v in options.items() if k not in self._CONFIG_KEYS}
        ).model_dump(exclude_unset=True)
        self.contamination = float(options.get("contamination", 0.1))
        if not 0 < self.contamination < 0.5:
            raise ValueError(f"options.contamination must be in (0, 0.5): {self.contamination}")
        self.models: FittedModels[_Loaded] = FittedModels(int(options.get("cache_size", 8)))
        self.load_backend()
        self._check_options(self.defaults, "options")

    def load_backend(self) -> None:
        """Import the backend library (fail early with the install hint)."""

    def _check_options(self, options: dict[str, Any], where: str) -> None:
        extra = sorted(set(options) - self.accepted)
        if extra:
            raise InvalidRequest(
                f"{where}.{extra[0]} does not apply to {self.backend} ({self.algorithm}); "
                f"it takes: {', '.join(sorted(self.accepted))}",
                param=f"{where}.{extra[0]}",
            )

    # --- the batched path ------------------------------------------------------------
    def prepare(self, request: _Rows) -> list[_Job]:
        """Validate on the caller's own request (a bad row must not fail a batch)."""
        if isinstance(request, AnomalyFitInput):
            self._check_options(request.options.model_dump(exclude_unset=True), "options")
        if request.data is not None:
            return [_Job(request, _matrix(request.data))]
        assert request.series is not None
        window = request.window if isinstance(request, AnomalyFitInput) else None
        if window is None:  # scoring: the detector's window, read in forward
            return [_Job(request, np.asarray([], dtype=np.float64))]
        return [_Job(request, series_windows(request.series, window))]

    def forward(self, items: list[_Job]) -> list[_Output]:
        """Each job on its own: one failing fit answers its caller, not the whole batch."""
        outputs: list[_Output] = []
        for job in items:
            try:
                if isinstance(job.request, AnomalyFitInput):
                    outputs.append(self._fit(job.request, job.rows))
                else:
                    assert isinstance(job.request, AnomalyScoreInput)
                    outputs.append(self._score(job.request, job.rows))
            except CorralError as exc:
                outputs.append(exc)
            except Exception:
                log.exception("anomaly expert %r failed", self.context.spec.name)
                outputs.append(
                    ExpertFailed(
                        f"expert {self.context.spec.name!r} failed on this request; "
                        "the server log has the details"
                    )
                )
        return outputs

    def finish(self, request: _Rows, outputs: list[_Output]) -> Any:
        (output,) = outputs
        if isinstance(output, CorralError):
            raise output
        return output

    # --- fit -------------------------------------------------------------------------
    def _fit(self, request: AnomalyFitInput, rows: np.ndarray) -> FitResult:
        if len(rows) < 2:
            where = "series" if request.series is not None else "data"
            raise InvalidRequest(f"{where}: fitting needs at least 2 rows (windows)", param=where)
        started = time.perf_counter()
        options = {**self.defaults, **request.options.model_dump(exclude_unset=True)}
        options.setdefault("seed", 0)
        contamination = request.contamination or self.contamination
        quantile = request.threshold_quantile or 1.0 - contamination
        mean, scale = _standardiser(rows)
        z = _standardise(rows, mean, scale)
        model, fit_scores = self.fit_model(z, options, contamination)
        fit_scores = self._finite(fit_scores, "data" if request.series is None else "series")
        threshold = float(np.quantile(fit_scores, quantile))
        seconds = time.perf_counter() - started
        meta = {
            "backend": self.backend,
            "algorithm": self.algorithm,
            "expert": self.context.spec.name,
            "n_rows": int(rows.shape[0]),
            "n_features": int(rows.shape[1]),
            "window": request.window,
            "threshold": threshold,
            "threshold_quantile": quantile,
            "contamination": contamination,
            "options": options,
            "fit_seconds": seconds,
        }
        arrays = {"mean": mean, "scale": scale, **self.model_arrays(model, z)}
        info = self.store.save(KIND, request.detector, arrays, meta)
        self.models.put(info, _Loaded(model, mean, scale, info))
        return FitResult(
            detector=info.name,
            version=info.version,
            expert=self.context.spec.name,
            backend=self.backend,
            algorithm=self.algorithm,
            n_rows=int(rows.shape[0]),
            n_features=int(rows.shape[1]),
            window=request.window,
            threshold=threshold,
            threshold_quantile=quantile,
            fit_seconds=seconds,
        )

    # --- score -----------------------------------------------------------------------
    def _score(self, request: AnomalyScoreInput, rows: np.ndarray) -> ScoreResult:
        loaded = self._detector(request.detector, request.version)
        meta = loaded.info.meta
        window = meta.get("window")
        if request.series is not None:
            if window is None:
                raise InvalidRequest(
                    f"detector {request.detector!r} was fitted on rows; send `data`, not `series`",
                    param="series",
                )
            rows = series_windows(request.series, int(window))
        elif window is not None:
            raise InvalidRequest(
                f"detector {request.detector!r} was fitted on a series (window {window}); "
                "send `series`",
                param="data",
            )
        if rows.shape[1] != meta["n_features"]:
            raise InvalidRequest(
                f"data rows have {rows.shape[1]} features; detector {request.detector!r} "
                f"was fitted on {meta['n_features']}",
                param="data",
            )
        z = _standardise(rows, loaded.mean, loaded.scale)
        scores = self._finite(self.score_model(loaded.model, z), "data")
        threshold = float(meta["threshold"])
        return ScoreResult(
            detector=loaded.info.name,
            version=loaded.info.version,
            window=window,
            threshold=threshold,
            scores=scores.tolist(),
            is_anomaly=(scores > threshold).tolist(),
        )

    def _detector(self, name: str, version: int | None) -> _Loaded:
        """From the cache, else from the store (refitted or rebuilt by the backend)."""
        info = self.store.info(KIND, name, version)
        return self.models.get(info, lambda: self._restore(name, info))

    def _restore(self, name: str, info: ArtifactInfo) -> _Loaded:
        backend = info.meta.get("backend")
        if backend != self.backend:
            raise InvalidRequest(
                f"detector {name!r} was fitted by a {backend} expert "
                f"({info.meta.get('expert')!r}); score it there",
                param="model",
            )
        artifact = self.store.load(KIND, name, info.version)
        arrays = dict(artifact.arrays)
        mean, scale = arrays.pop("mean"), arrays.pop("scale")
        return _Loaded(self.restore_model(arrays, info.meta), mean, scale, info)

    @staticmethod
    def _finite(scores: np.ndarray, where: str) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if not np.isfinite(scores).all():
            raise InvalidRequest(
                f"{where}: the detector's scores are not finite (degenerate data?)", param=where
            )
        return scores
