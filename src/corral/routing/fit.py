"""``corral route fit``: calibrate a cascade's first stage, or fit the difficulty router,
on labelled examples.

Runs the first-stage classifier over labelled examples (``read_labelled``: JSONL of
``{"text": ..., "label": ...}``; the label set is every label in the file), fits the
temperature, then picks the threshold for the target escalation rate or kept accuracy.
"""

from __future__ import annotations

import numpy as np

from corral._vectors import unit_rows
from corral.config import Config
from corral.errors import ConfigError, InvalidRequest
from corral.eval.datasets import LabelledText
from corral.routing.calibration import (
    CascadeFit,
    best_f1_threshold,
    calibrated,
    fit_isotonic,
    fit_temperature,
    threshold_for_accuracy,
    threshold_for_escalation,
)
from corral.routing.difficulty import DifficultyModel, fit_ladder
from corral.routing.router import Router
from corral.runtime import Runtime
from corral.tasks.text.classify import ClassifyInput

__all__ = ["first_stage_scores", "fit_cascade", "fit_difficulty_router", "fit_route_thresholds"]

_CHUNK = 32


async def first_stage_scores(
    runtime: Runtime, expert: str, examples: list[LabelledText], labels: list[str]
) -> np.ndarray:
    """(n_examples, n_labels) scores of the first-stage classifier, in ``labels`` order."""
    handle = runtime.handles[expert]
    rows = []
    for start in range(0, len(examples), _CHUNK):
        chunk = [e.text for e in examples[start : start + _CHUNK]]
        results = await runtime.submit(handle, ClassifyInput(texts=chunk, labels=labels))
        rows += [r.scores_for(labels) for r in results]
    return np.array(rows)


async def fit_cascade(
    config: Config,
    cascade: str,
    examples: list[LabelledText],
    *,
    escalation: float | None = None,
    accuracy: float | None = None,
    method: str = "temperature",
) -> CascadeFit:
    """Calibrate ``cascade``'s first stage for a target escalation rate or accuracy."""
    spec = next((c for c in config.routing.cascades if c.name == cascade), None)
    if spec is None:
        known = ", ".join(c.name for c in config.routing.cascades) or "none configured"
        raise ConfigError([f"no cascade named {cascade!r} (cascades: {known})"])
    if (escalation is None) == (accuracy is None):
        raise InvalidRequest("give exactly one target: an escalation rate or an accuracy")
    labels = sorted({e.label for e in examples})
    gold = np.array([labels.index(e.label) for e in examples])
    runtime = Runtime(config)
    try:
        scores = await first_stage_scores(runtime, spec.stages[0].expert, examples, labels)
    finally:
        await runtime.close()
    fit = CascadeFit(fit_temperature(scores, gold), 0.0, "", len(examples), 0.0, 0.0, method)
    correct = scores.argmax(axis=1) == gold
    if method == "isotonic":
        top = calibrated(scores, fit.temperature).max(axis=1)
        fit.isotonic_x, fit.isotonic_y = fit_isotonic(top, correct)
    confidence = fit.confidence(scores)
    if escalation is not None:
        threshold, target = (
            threshold_for_escalation(confidence, escalation),
            f"escalation={escalation:.2f}",
        )
    else:
        assert accuracy is not None
        threshold = threshold_for_accuracy(confidence, correct, accuracy)
        target = f"accuracy={accuracy:.2f}"
    kept = confidence >= threshold
    fit.threshold, fit.target = threshold, target
    fit.escalation = float(1.0 - kept.mean())
    fit.kept_accuracy = float(correct[kept].mean()) if kept.any() else 0.0
    return fit


async def fit_difficulty_router(
    config: Config, examples: list[LabelledText]
) -> list[DifficultyModel]:
    """Fit ``routing.difficulty``'s rungs on prompts labelled with the cheapest expert
    that answers them well enough (``small``/``large``: the ladder's first and last)."""
    spec = config.routing.difficulty
    if spec is None:
        raise ConfigError(["routing.difficulty is not configured (experts, or small and large)"])
    ladder = spec.ladder
    tier_of = {name: i for i, name in enumerate(ladder)} | {"small": 0, "large": len(ladder) - 1}
    unknown = sorted({e.label for e in examples} - set(tier_of))
    if unknown:
        allowed = ", ".join(repr(name) for name in tier_of)
        raise InvalidRequest(f"difficulty labels must be one of {allowed}, not {unknown}")
    runtime = Runtime(config)
    try:
        vectors = unit_rows(await Router(runtime).embed([e.text for e in examples]))
    finally:
        await runtime.close()
    tiers = np.array([tier_of[e.label] for e in examples])
    try:
        return fit_ladder(vectors, tiers, ladder, spec.shares)
    except ValueError as exc:
        raise InvalidRequest(f"routing.difficulty ({' < '.join(ladder)}): {exc}") from None


async def fit_route_thresholds(config: Config, examples: list[LabelledText]) -> dict[str, float]:
    """Per semantic route, the threshold with the best F1 on utterances labelled with the
    route's name (or anything else, e.g. ``none``, for messages no route should take)."""
    if not config.routing.routes:
        raise ConfigError(["routing.routes is empty: no semantic routes to fit"])
    runtime = Runtime(config)
    try:
        router = Router(runtime)
        assert router.semantic is not None
        matches = [await router.semantic.match(e.text) for e in examples]
    finally:
        await runtime.close()
    names = np.array([m.route.name for m in matches])
    scores = np.array([m.score for m in matches])
    labels = np.array([e.label for e in examples])
    return {
        route.name: best_f1_threshold(scores, names == route.name, labels == route.name)
        for route in config.routing.routes
    }
