"""Text classification, zero-shot against the caller's labels or with the model's own.

* ``nli``: an NLI cross-encoder (e.g. bart-large-mnli) scores "text entails
  'This example is {label}.'" for every (text, label) pair, batched across requests;
  the same scoring rule as transformers' zero-shot pipeline.
* ``sequence-classification``: a fine-tuned classifier with fixed labels.
* ``similarity``: cosine between the text and "This text is about {label}." with a
  sentence embedder; what the built-in default uses when no NLI model is installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, StrictBool, field_validator

from corral.config import LimitsConfig, Task
from corral.errors import ExpertUnavailable, InvalidRequest
from corral.experts._memory import torch_bytes
from corral.experts.base import Expert, require
from corral.experts.operation import Operation
from corral.experts.options import ClassifierOptions, Options
from corral.input_limits import check_labels, check_texts
from corral.tasks.text._sentence import Embedding, SentenceEncoderExpert
from corral.tasks.text.hypothesis import check_template, distinct_labels, fill_template

__all__ = [
    "CLASSIFY",
    "Classification",
    "ClassifyInput",
    "NliClassifier",
    "SequenceClassifier",
    "SimilarityClassifier",
]


class ClassifyInput(BaseModel):
    texts: list[str] = Field(min_length=1, description="Texts to classify.")
    labels: list[str] | None = Field(
        None, description="Candidate labels (zero-shot); omit for a model with its own labels."
    )
    multi_label: StrictBool = Field(False, description="Score each label independently.")
    hypothesis_template: str | None = Field(
        None, description="Zero-shot template with one {} (or {label}) for the label."
    )

    _template_slot = field_validator("hypothesis_template")(
        lambda value: None if value is None else check_template(value)
    )
    _labels_distinct = field_validator("labels")(lambda value: distinct_labels(value))

    def check_limits(self, limits: LimitsConfig) -> None:
        """``server.limits`` on this input (413 naming the limit), as built over HTTP
        or by a tool call."""
        check_texts(self.texts, limits)
        check_labels(self.labels, limits)


@dataclass(frozen=True)
class Classification:
    """Labels sorted by score, highest first."""

    labels: list[str]
    scores: list[float]
    tokens: int

    def scores_for(self, labels: list[str]) -> list[float]:
        """The scores in the order of ``labels`` (the caller's), not ranked."""
        return [self.scores[self.labels.index(label)] for label in labels]


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = np.exp(x - x.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


def _ranked(labels: list[str], scores: np.ndarray, tokens: int) -> Classification:
    order = np.argsort(-scores, kind="stable")
    return Classification([labels[i] for i in order], [float(scores[i]) for i in order], tokens)


def _require_labels(request: ClassifyInput) -> list[str]:
    if not request.labels:
        raise InvalidRequest("this classifier is zero-shot: give 'labels'", param="labels")
    return request.labels


def _template(request: ClassifyInput, default: str) -> str:
    template = request.hypothesis_template or default
    try:
        return check_template(template)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="hypothesis_template") from None


CLASSIFY = Operation(Task.CLASSIFY, ClassifyInput, list[Classification])


class _TransformersClassifier(Expert[ClassifyInput, Any, tuple[np.ndarray, int], Any]):
    """Shared loading and batched forward of a transformers sequence-classification model."""

    options_model = Options
    task = Task.CLASSIFY
    operation = CLASSIFY

    def load(self) -> None:
        transformers = require("transformers", "text")
        self.torch = require("torch", "text")
        path = str(self.context.path)
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = transformers.AutoModelForSequenceClassification.from_pretrained(
            path, local_files_only=True
        ).to(self.context.device)
        self.model.eval()
        self.id2label = {int(k): str(v) for k, v in self.model.config.id2label.items()}

    def unload(self) -> None:
        del self.model, self.tokenizer

    def resident_bytes(self) -> int | None:
        return torch_bytes(self.model)

    def forward(self, items: list[Any]) -> list[tuple[np.ndarray, int]]:
        outputs: list[tuple[np.ndarray, int]] = []
        for start in range(0, len(items), self.batch_size):
            chunk = items[start : start + self.batch_size]
            pairs = isinstance(chunk[0], tuple)
            encoded = self.tokenizer(
                [c[0] for c in chunk] if pairs else chunk,
                [c[1] for c in chunk] if pairs else None,
                padding=True,
                truncation="only_first" if pairs else True,
                return_tensors="pt",
            ).to(self.context.device)
            with self.torch.inference_mode():
                logits = self.model(**encoded).logits.float().cpu().numpy()
            tokens = encoded["attention_mask"].sum(dim=1).tolist()
            outputs += list(zip(logits, tokens, strict=True))
        return outputs


class NliClassifier(_TransformersClassifier):
    """Classify text into caller-chosen labels (zero-shot NLI)."""

    backend = "nli"
    default_template = "This example is {}."

    def load(self) -> None:
        super().load()
        by_name = {v.lower(): k for k, v in self.id2label.items()}
        if "entailment" not in by_name:
            raise ExpertUnavailable(
                f"{self.context.spec.name}: not an NLI model (labels {list(by_name)}); "
                "set backend: sequence-classification"
            )
        self.entail = by_name["entailment"]
        self.contradict = next((k for n, k in by_name.items() if n.startswith("contradict")), -1)

    def prepare(self, request: ClassifyInput) -> list[tuple[str, str]]:
        labels = _require_labels(request)
        template = _template(request, self.default_template)
        hypotheses = [fill_template(template, label) for label in labels]
        return [(text, hypothesis) for text in request.texts for hypothesis in hypotheses]

    def finish(
        self, request: ClassifyInput, outputs: list[tuple[np.ndarray, int]]
    ) -> list[Classification]:
        labels = _require_labels(request)
        logits = np.stack([o[0] for o in outputs]).reshape(len(request.texts), len(labels), -1)
        tokens = np.array([o[1] for o in outputs]).reshape(len(request.texts), len(labels))
        if request.multi_label or len(labels) == 1:
            pair = logits[..., [self.contradict, self.entail]]
            scores = _softmax(pair)[..., 1]
        else:
            scores = _softmax(logits[..., self.entail], axis=1)
        return [_ranked(labels, s, int(t.sum())) for s, t in zip(scores, tokens, strict=True)]


class SequenceClassifier(_TransformersClassifier):
    """Classify text into the model's own fixed labels."""

    backend = "sequence-classification"

    @property
    def labels(self) -> list[str] | None:
        return [self.id2label[i] for i in sorted(self.id2label)]

    def prepare(self, request: ClassifyInput) -> list[str]:
        if request.labels is not None:
            unknown = sorted(set(request.labels) - set(self.labels or []))
            if unknown:
                raise InvalidRequest(
                    f"this model has fixed labels {self.labels}; unknown: {unknown}",
                    param="labels",
                )
        return request.texts

    def finish(
        self, request: ClassifyInput, outputs: list[tuple[np.ndarray, int]]
    ) -> list[Classification]:
        logits = np.stack([o[0] for o in outputs])
        multi = (
            request.multi_label or self.model.config.problem_type == "multi_label_classification"
        )
        scores = 1.0 / (1.0 + np.exp(-logits)) if multi else _softmax(logits)
        names = self.labels or []
        keep = [i for i, n in enumerate(names) if request.labels is None or n in request.labels]
        return [
            _ranked([names[i] for i in keep], s[keep], t)
            for s, (_, t) in zip(scores, outputs, strict=True)
        ]


class SimilarityClassifier(SentenceEncoderExpert[ClassifyInput, list[Classification]]):
    """Classify text into caller-chosen labels (embedding similarity to label descriptions)."""

    options_model = ClassifierOptions
    task = Task.CLASSIFY
    backend = "similarity"
    operation = CLASSIFY
    default_template = "This text is about {}."

    def load(self) -> None:
        super().load()
        # Softmax temperature over cosines, and the cosine where a multi-label score is 0.5.
        self.temperature = float(self.context.options.get("temperature", 0.05))
        self.multi_label_midpoint = float(self.context.options.get("multi_label_midpoint", 0.25))

    def prepare(self, request: ClassifyInput) -> list[str]:
        labels = _require_labels(request)
        template = _template(request, self.default_template)
        return [*request.texts, *(fill_template(template, label) for label in labels)]

    def finish(self, request: ClassifyInput, outputs: list[Embedding]) -> list[Classification]:
        labels = _require_labels(request)
        n = len(request.texts)
        texts = np.stack([o.vector for o in outputs[:n]])
        descriptions = np.stack([o.vector for o in outputs[n:]])
        cosine = texts @ descriptions.T
        if request.multi_label:
            scores = 1.0 / (1.0 + np.exp(-(cosine - self.multi_label_midpoint) / self.temperature))
        else:
            scores = _softmax(cosine / self.temperature, axis=1)
        return [_ranked(labels, s, outputs[i].tokens) for i, s in enumerate(scores)]
