"""Classification cascades: the smallest expert answers first; the next, costlier one
only sees the items the previous stage was not confident about.

A stage is a classifier (confidence: its top calibrated score) or an LLM asked to pick one
of the labels under a JSON-schema grammar (confidence: the probability of the label's
tokens when the backend returns logprobs; without them the LLM's answer is accepted).
An item stops at the first stage whose confidence clears that stage's threshold; the
last stage always answers.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from corral.config import CascadeConfig, Task
from corral.errors import InvalidRequest
from corral.observe.trace import current_trace
from corral.routing.calibration import CascadeFit
from corral.runtime import ExpertHandle
from corral.tasks.text.classify import Classification, ClassifyInput

if TYPE_CHECKING:
    from corral.routing.dispatch import Dispatcher

__all__ = ["CascadeAnswer", "ClassifyCascade", "classify_with_llm"]


@dataclass(frozen=True)
class CascadeAnswer:
    classification: Classification
    expert: str
    confidence: float | None


class ClassifyCascade:
    def __init__(self, dispatch: Dispatcher, config: CascadeConfig, fit: CascadeFit | None) -> None:
        self.dispatch = dispatch
        self.config = config
        self.stages = [dispatch.handle(stage.expert) for stage in config.stages]
        self.thresholds = [stage.threshold for stage in config.stages]
        self.calibration = fit  # `corral route fit` calibrated the first stage
        if fit is not None:
            self.thresholds[0] = fit.threshold

    async def run(self, request: ClassifyInput) -> list[CascadeAnswer]:
        if request.multi_label or not request.labels:
            raise InvalidRequest(
                f"cascade {self.config.name!r} picks one of the given labels: give 'labels' "
                "and leave multi_label off",
                param="model",
            )
        trace = current_trace()
        answers: list[CascadeAnswer | None] = [None] * len(request.texts)
        pending = list(range(len(request.texts)))
        for number, (handle, threshold) in enumerate(
            zip(self.stages, self.thresholds, strict=True)
        ):
            last = number == len(self.stages) - 1
            texts = [request.texts[i] for i in pending]
            results = await self._stage(handle, request, texts, want_confidence=not last)
            kept, passed = [], []
            for index, (classification, confidence) in zip(pending, results, strict=True):
                if last or threshold is None or confidence is None or confidence >= threshold:
                    answers[index] = CascadeAnswer(classification, handle.name, confidence)
                    kept.append(index)
                else:
                    passed.append(index)
            trace.decide(
                "cascade",
                handle.name,
                f"{self.config.name} stage {number + 1}: {len(kept)} of {len(texts)} answered"
                + (
                    f" (confidence >= {threshold:.3f})"
                    if threshold is not None and not last
                    else ""
                ),
            )
            if passed:
                nxt = self.stages[number + 1].name
                self._count_escalations(handle.name, nxt, len(passed))
            pending = passed
            if not pending:
                break
        return [a for a in answers if a is not None]

    async def _stage(
        self, handle: ExpertHandle, request: ClassifyInput, texts: list[str], want_confidence: bool
    ) -> list[tuple[Classification, float | None]]:
        labels = request.labels or []
        if handle.task == Task.CHAT:
            return await classify_with_llm(self.dispatch, handle, texts, labels, want_confidence)
        stage_request = request.model_copy(update={"texts": texts})
        _, results = await self.dispatch.submit(handle, stage_request)
        return [(r, self._confidence(r, labels)) for r in results]

    def _confidence(self, result: Classification, labels: list[str]) -> float:
        scores = np.array(result.scores_for(labels))
        if self.calibration is None:
            return float(scores.max())
        return float(self.calibration.confidence(scores[None, :])[0])

    def _count_escalations(self, source: str, target: str, count: int) -> None:
        metrics = self.dispatch.runtime.metrics
        if metrics is not None:
            metrics.escalations.labels(self.config.name, source, target).inc(count)


async def classify_with_llm(
    dispatch: Dispatcher,
    handle: ExpertHandle,
    texts: list[str],
    labels: list[str],
    want_confidence: bool = False,
) -> list[tuple[Classification, float | None]]:
    """An LLM as a classifier: it picks one of ``labels`` per text under a JSON-schema
    grammar (an enum, so the answer is always a label). Confidence needs logprobs from
    the backend (expert option ``logprobs: true``); otherwise it is None."""
    return list(
        await asyncio.gather(
            *(_ask_llm(dispatch, handle, text, labels, want_confidence) for text in texts)
        )
    )


async def _ask_llm(
    dispatch: Dispatcher, handle: ExpertHandle, text: str, labels: list[str], want_confidence: bool
) -> tuple[Classification, float | None]:
    schema = {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": labels}},
        "required": ["label"],
    }
    params: dict[str, Any] = {
        "messages": [
            {
                "role": "system",
                "content": "Classify the user's text into exactly one of these labels: "
                + ", ".join(labels)
                + '. Reply with JSON: {"label": ...}.',
            },
            {"role": "user", "content": text},
        ],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "label", "schema": schema},
        },
        "temperature": 0.0,
        "max_tokens": 32,
    }
    if want_confidence and handle.spec.options.get("logprobs", False):
        params |= {"logprobs": True, "top_logprobs": 1}
    _, reply = await dispatch.chat(handle, params)
    choice = reply["choices"][0]
    content = choice["message"].get("content") or ""
    try:
        label = str(json.loads(content)["label"])
    except (json.JSONDecodeError, KeyError, TypeError):
        label = ""
    if label not in labels:  # the grammar should prevent this; treat as not confident
        return Classification([labels[0]], [0.0], 0), 0.0
    confidence = _label_probability(choice.get("logprobs"), content, label)
    tokens = int(reply.get("usage", {}).get("prompt_tokens", 0))
    return Classification([label], [confidence if confidence is not None else 1.0], tokens), (
        confidence
    )


def _label_probability(logprobs: Any, content: str, label: str) -> float | None:
    """Probability of the label's tokens in the reply (None without logprobs)."""
    tokens = (logprobs or {}).get("content") if isinstance(logprobs, dict) else None
    if not tokens:
        return None
    start = content.find(f'"{label}"') + 1
    end = start + len(label)
    offset, total = 0, 0.0
    for token in tokens:
        piece = str(token.get("token", ""))
        if offset < end and offset + len(piece) > start:
            total += float(token.get("logprob", 0.0))
        offset += len(piece)
    return math.exp(total)
