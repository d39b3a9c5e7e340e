"""``model: "auto"`` on the task endpoints: the smallest capable expert, by a measured rule.

Each rule (``routing.auto``, see ``config_auto.py``) picks among the task's configured
experts and records one trace decision of stage ``auto`` with its reason and scores:

* forecast: per series, a rolling-origin backtest on the series' own tail; the cheapest
  candidate (config order) whose backtest error is within ``tolerance`` of the best wins;
  the error is returned with the forecast (``forecast_backtest.py`` does the measuring);
* rerank: retrieve then rerank (bi-encoder over all, cross-encoder over the top k);
* detect: the smallest detector first, frames without a confident box escalate;
* document: text layer and OCR first, a layout model for pages with no key/value pair;
* classify (``Router.classify``) runs a cascade; chat (``Router.auto``) semantic routes,
  the difficulty router and the coordinator.

With one expert for a task (or no rule for it), ``auto`` is the task's default expert.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from corral.config import Task
from corral.observe.trace import current_trace
from corral.routing.forecast_backtest import backtest_choice
from corral.runtime import ExpertHandle, ExpertState
from corral.tasks.detect.expert import DetectInput, ImageDetections
from corral.tasks.documents.expert import DocumentInput, DocumentResult
from corral.tasks.forecast.expert import ForecastInput, SeriesForecast
from corral.tasks.text.rerank import RerankInput, RerankScores

if TYPE_CHECKING:
    from corral.routing.router import Router

__all__ = ["AUTO", "AutoRules", "ForecastPick"]

AUTO = "auto"  # the model name that asks the router to choose
_LAYOUT_BACKENDS = frozenset({"layoutlmv3"})


@dataclass(frozen=True)
class ForecastPick:
    """One series' forecast, the expert the backtest chose and that expert's error."""

    forecast: SeriesForecast
    expert: str
    backtest_error: float | None


class AutoRules:
    """The per-task rules of one router (one per server)."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.config = router.config.auto

    def experts(self, task: Task, names: list[str] | None = None) -> list[ExpertHandle]:
        """The candidates: ``names`` (config checked they exist) or every expert of
        ``task`` in config order; unavailable ones are left out."""
        handles = (
            [self.router.handle(n) for n in names]
            if names
            else [h for h in self.router.runtime.handles.values() if h.task == task]
        )
        return [h for h in handles if h.state != ExpertState.UNAVAILABLE and h.task == task]

    async def serve(self, task: Task, request: Any) -> tuple[ExpertHandle, Any]:
        """The task endpoint's answer under ``model: "auto"``."""
        if task == Task.RERANK:
            return await self.rerank(request)
        if task == Task.DETECT:
            return await self.detect(request)
        if task == Task.DOCUMENT:
            return await self.document(request)
        return await self.default(task, request)

    def pick_default(self, task: Task) -> ExpertHandle:
        """``auto`` for a task with no measured rule: its default expert, traced as such."""
        handle = self.router.runtime.find(task, None)
        count = len(self.experts(task))
        why = "the only one" if count == 1 else f"no measured rule for {task.value}: the default"
        current_trace().decide("auto", handle.name, f"{why} of {count} {task.value} expert(s)")
        return handle

    async def default(self, task: Task, request: Any) -> tuple[ExpertHandle, Any]:
        handle = self.pick_default(task)
        answered, result = await self.router.dispatch.submit(handle, request)
        self.router.answered(handle, answered, "auto")
        return answered, result

    # --- forecast -------------------------------------------------------------------
    async def forecast(self, request: ForecastInput) -> list[ForecastPick]:
        """Backtest each candidate on every series' tail, then forecast each series with
        the one chosen for it (series sharing an expert go in one call)."""
        rule = self.config.forecast
        candidates = self.experts(Task.FORECAST, rule.experts)
        if not candidates:
            candidates = [self.router.runtime.find(Task.FORECAST, None)]
        started = time.perf_counter()
        choice = await backtest_choice(self.router.dispatch, candidates, request, rule)
        current_trace().decide(
            "auto",
            ",".join(sorted({c.name for c in choice.experts})),
            choice.reason,
            score=_mean([e for e in choice.errors if e is not None]),
            seconds=time.perf_counter() - started,
            scores={"series": choice.scores},
        )
        results: list[SeriesForecast | None] = [None] * len(request.series)
        answered_by: list[str] = [""] * len(request.series)
        for handle in dict.fromkeys(choice.experts):
            indices = [i for i, h in enumerate(choice.experts) if h is handle]
            part = request.model_copy(update={"series": [request.series[i] for i in indices]})
            answered, forecasts = await self.router.dispatch.submit(handle, part)
            for i, forecast in zip(indices, forecasts, strict=True):
                results[i], answered_by[i] = forecast, answered.name
        current_trace().answered_by(",".join(dict.fromkeys(answered_by)), "auto")
        return [
            ForecastPick(r, name, error)
            for r, name, error in zip(results, answered_by, choice.errors, strict=True)
            if r is not None
        ]

    # --- rerank ---------------------------------------------------------------------
    async def rerank(self, request: RerankInput) -> tuple[ExpertHandle, RerankScores]:
        rule = self.config.rerank
        experts = self.experts(Task.RERANK)
        retriever = self._rerank_expert(rule.retriever, experts, "bi-encoder")
        reranker = self._rerank_expert(rule.reranker, experts, "cross-encoder")
        trace = current_trace()
        if retriever is None or reranker is None or len(request.documents) <= rule.top_k:
            only = reranker or retriever
            if only is None:
                return await self.default(Task.RERANK, request)
            why = (
                f"{len(request.documents)} passages <= top_k {rule.top_k}: "
                "the cross-encoder reads all"
                if retriever is not None and reranker is not None
                else f"only a {only.resolved.backend} reranker is configured"
            )
            trace.decide("auto", only.name, why)
            answered, scored = await self.router.dispatch.submit(only, request)
            self.router.answered(only, answered, "auto")
            return answered, scored
        started = time.perf_counter()
        _, first = await self.router.dispatch.submit(retriever, request)
        ranked = sorted(range(len(request.documents)), key=lambda i: -first.scores[i])
        top = ranked[: rule.top_k]
        second_request = RerankInput(
            query=request.query, documents=[request.documents[i] for i in top]
        )
        answered, second = await self.router.dispatch.submit(reranker, second_request)
        trace.decide(
            "auto",
            f"{retriever.name},{answered.name}",
            f"retrieve then rerank: {retriever.name} over {len(request.documents)} passages, "
            f"{answered.name} over its top {len(top)}",
            seconds=time.perf_counter() - started,
            scores={"retrieved": top, "retriever_scores": [first.scores[i] for i in top]},
        )
        trace.answered_by(f"{retriever.name},{answered.name}", "auto")
        return answered, _merge_rerank(first, second, top)

    def _rerank_expert(
        self, name: str | None, experts: list[ExpertHandle], backend: str
    ) -> ExpertHandle | None:
        if name is not None:
            return self.router.handle(name)
        return next((h for h in experts if h.resolved.backend == backend), None)

    # --- detect ---------------------------------------------------------------------
    async def detect(self, request: DetectInput) -> tuple[ExpertHandle, list[ImageDetections]]:
        """Smallest first; frames where no box reaches ``min_score`` go to the next."""
        rule = self.config.detect
        stages = self.experts(Task.DETECT, rule.experts)
        if len(stages) < 2:
            return await self.default(Task.DETECT, request)
        started = time.perf_counter()
        count = len(request._frames) if request._frames is not None else len(request.file_ids)
        pending = list(range(count))
        results: list[ImageDetections | None] = [None] * count
        used: list[str] = []
        last: ExpertHandle = stages[0]
        for depth, stage in enumerate(stages):
            subset = _frames_subset(request, pending)
            answered, found = await self.router.dispatch.submit(stage, subset)
            used.append(answered.name)
            last = answered
            still = []
            for i, result in zip(pending, found, strict=True):
                results[i] = result
                confident = any(d.score >= rule.min_score for d in result.detections)
                if not confident and depth < len(stages) - 1:
                    still.append(i)
            pending = still
            if not pending:
                break
        current_trace().decide(
            "auto",
            ",".join(used),
            f"smallest detector first; frames without a box scoring >= {rule.min_score:g} "
            f"escalate ({' -> '.join(used)})",
            seconds=time.perf_counter() - started,
        )
        current_trace().answered_by(",".join(used), "auto")
        return last, [r for r in results if r is not None]

    # --- documents ------------------------------------------------------------------
    async def document(self, request: DocumentInput) -> tuple[ExpertHandle, DocumentResult]:
        """Text layer and OCR first; a layout model when they found no key/value pair."""
        rule = self.config.document
        experts = self.experts(Task.DOCUMENT, rule.experts)
        if not rule.experts:  # layout models last
            experts.sort(key=lambda h: h.resolved.backend in _LAYOUT_BACKENDS)
        if len(experts) < 2:
            return await self.default(Task.DOCUMENT, request)
        started = time.perf_counter()
        trail: list[dict[str, Any]] = []
        for stage in experts:
            answered, result = await self.router.dispatch.submit(stage, request)
            missing = [page.index for page in result.pages if not page.key_values]
            sources = sorted({page.source for page in result.pages})
            trail.append(
                {"expert": answered.name, "sources": sources, "pages_without_pairs": missing}
            )
            if not missing:
                break
        current_trace().decide(
            "auto",
            answered.name,
            _document_reason(trail),
            seconds=time.perf_counter() - started,
            scores={"stages": trail},
        )
        current_trace().answered_by(answered.name, "auto")
        return answered, result


def _document_reason(trail: list[dict[str, Any]]) -> str:
    """Each stage's outcome: the text layer / OCR first, escalating while a page has no
    key/value pair."""
    said = []
    for stage in trail:
        missing = stage["pages_without_pairs"]
        outcome = f"no key/value pair on pages {missing}" if missing else "pairs on every page"
        said.append(f"{stage['expert']} ({'/'.join(stage['sources'])}): {outcome}")
    return "text layer / OCR first, a layout model last; " + " -> ".join(said)


def _frames_subset(request: DetectInput, indices: list[int]) -> DetectInput:
    options = {
        "classes": request.classes,
        "score_threshold": request.score_threshold,
        "iou_threshold": request.iou_threshold,
        "max_detections": request.max_detections,
    }
    if request._frames is not None:
        return DetectInput.with_frames(
            [request._frames[i] for i in indices], [request._params[i] for i in indices], **options
        )
    return DetectInput(file_ids=[request.file_ids[i] for i in indices], **options)


def _merge_rerank(first: RerankScores, second: RerankScores, top: list[int]) -> RerankScores:
    """All passages in input order: the top ones with the cross-encoder's scores, the rest
    below all of them, in the retriever's order (scaled under the lowest top score)."""
    floor = min(second.scores) if second.scores else 0.0
    low_raw = min(second.raw) if second.raw else 0.0
    scores = [s * floor * 0.999 for s in first.scores]  # retriever scores are in [0, 1]
    raw = [low_raw - 2.0 + s for s in first.scores]
    for position, i in enumerate(top):
        scores[i], raw[i] = second.scores[position], second.raw[position]
    return RerankScores(scores=scores, raw=raw, tokens=first.tokens + second.tokens)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
