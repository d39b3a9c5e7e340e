"""A fake backend per task family, registered through ``corral.tasks.register_family``.

Each fake is a real ``Expert`` of its task, on corral's real path (the registry, the
runtime, the batcher, the dispatcher, the routes), computing its answer in plain numpy
instead of with a model, so the API's shapes can be tested in milliseconds over
``httpx.ASGITransport``. They are in addition to the real-model tests, never instead of
one: each answer is a function of its input that the tests recompute (``embed_vector``,
``overlap``...), so a test checks the value, not only the shape.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import numpy as np

from corral.config import Task
from corral.experts.base import Expert
from corral.experts.options import Options
from corral.tasks.anomaly.expert import AnomalyExpert
from corral.tasks.chat.expert import ChatExpert
from corral.tasks.chat.reply import chat_reply, usage
from corral.tasks.detect.expert import DetectExpert, Detection, DetectItem, ImageDetections
from corral.tasks.documents.expert import OcrDocumentExpert
from corral.tasks.documents.layout import Word
from corral.tasks.family import Backend, TaskFamily
from corral.tasks.forecast.expert import (
    ForecastExpert,
    ForecastItem,
    ForecastOutput,
    series_result,
)
from corral.tasks.text._sentence import Embedding
from corral.tasks.text.classify import CLASSIFY, Classification, ClassifyInput
from corral.tasks.text.embed import EMBED, EmbedInput
from corral.tasks.text.rerank import RERANK, RerankInput, RerankScores

__all__ = ["FAKES", "embed_vector", "overlap"]

DIMENSIONS = 8


class _Weightless:
    """Nothing to load: the fakes compute their answers."""

    options_model: ClassVar[type[Options] | None] = Options
    uses_torch: ClassVar[bool] = False

    def load(self) -> None:
        pass

    def unload(self) -> None:
        pass


def embed_vector(text: str) -> np.ndarray:
    """A unit vector that is a function of the text alone."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    vector = np.random.default_rng(seed).normal(size=DIMENSIONS).astype(np.float32)
    return vector / np.linalg.norm(vector)


def overlap(query: str, document: str) -> float:
    """Share of the query's words the document has."""
    words = set(query.lower().split())
    return len(words & set(document.lower().split())) / max(len(words), 1)


class FakeEmbedder(_Weightless, Expert[EmbedInput, str, Embedding, list[Embedding]]):
    """Embed texts as hashed unit vectors."""

    task = Task.EMBED
    backend = "fake"
    operation = EMBED

    def prepare(self, request: EmbedInput) -> list[str]:
        return request.texts

    def forward(self, items: list[str]) -> list[Embedding]:
        return [Embedding(embed_vector(text), len(text.split())) for text in items]

    def finish(self, request: EmbedInput, outputs: list[Embedding]) -> list[Embedding]:
        return outputs


class FakeReranker(_Weightless, Expert[RerankInput, tuple[str, str], float, RerankScores]):
    """Score documents by the share of the query's words they have."""

    task = Task.RERANK
    backend = "fake"
    operation = RERANK

    def prepare(self, request: RerankInput) -> list[tuple[str, str]]:
        return [(request.query, document) for document in request.documents]

    def forward(self, items: list[tuple[str, str]]) -> list[float]:
        return [overlap(query, document) for query, document in items]

    def finish(self, request: RerankInput, outputs: list[float]) -> RerankScores:
        return RerankScores(outputs, outputs, sum(len(d.split()) for d in request.documents))


class FakeClassifier(_Weightless, Expert[ClassifyInput, str, str, list[Classification]]):
    """Rank the labels by the share of each label's words in the text."""

    task = Task.CLASSIFY
    backend = "fake"
    operation = CLASSIFY

    def prepare(self, request: ClassifyInput) -> list[str]:
        return request.texts

    def forward(self, items: list[str]) -> list[str]:
        return items

    def finish(self, request: ClassifyInput, outputs: list[str]) -> list[Classification]:
        labels = request.labels or ["positive", "negative"]
        results = []
        for text in outputs:
            scored = sorted(((overlap(lb, text), lb) for lb in labels), reverse=True)
            results.append(
                Classification([lb for _, lb in scored], [s for s, _ in scored], len(text.split()))
            )
        return results


class FakeChat(_Weightless, ChatExpert):
    """Answer with the last user message, reversed word by word."""

    backend = "fake"

    async def complete(self, params: dict[str, Any]) -> dict[str, Any]:
        answer = reply_to(params["messages"])
        return chat_reply(self.context.spec.name, answer, [], "stop", usage(1, 1))

    async def stream(self, params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        name = self.context.spec.name
        for n, word in enumerate(reply_to(params["messages"]).split()):
            delta = {"role": "assistant", "content": ("" if n == 0 else " ") + word}
            yield _chunk(name, delta, None)
        yield {**_chunk(name, {}, "stop"), "usage": usage(1, 1)}


def reply_to(messages: list[dict[str, Any]]) -> str:
    last = next(m for m in reversed(messages) if m["role"] == "user")
    return " ".join(reversed(str(last["content"]).split()))


def _chunk(model: str, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


class FakeForecaster(_Weightless, ForecastExpert):
    """Repeat each series' last value (the naive forecast)."""

    backend = "fake"

    def forward(self, items: list[ForecastItem]) -> list[ForecastOutput]:
        outputs = []
        for item in items:
            last = np.full(item.horizon, item.values[-1])
            outputs.append(series_result(item, last, {q: last for q in item.quantiles}))
        return outputs


class FakeDetector(_Weightless, DetectExpert):
    """One box around each whole image."""

    backend = "fake"
    names = ["thing"]

    def forward(self, items: list[DetectItem]) -> list[ImageDetections]:
        out = []
        for item in items:
            height, width = item.frame.shape[:2]
            box = Detection([0.0, 0.0, float(width), float(height)], "thing", 1.0)
            out.append(ImageDetections(width, height, [box]))
        return out


class _FakeOcr:
    """Reads every image as the same invoice line: 'Total: 12.00'."""

    name = "fake"

    def read(self, image: np.ndarray, *, param: str = "image") -> list[Word]:
        return [Word("Total:", (10.0, 10.0, 60.0, 22.0)), Word("12.00", (70.0, 10.0, 110.0, 22.0))]


class FakeDocuments(OcrDocumentExpert):
    """The real layout pipeline on words from a fake OCR."""

    backend = "fake"

    def load_ocr(self) -> _FakeOcr:  # type: ignore[override]
        return _FakeOcr()


class FakeAnomaly(AnomalyExpert):
    """Score rows by their distance from the fit data's mean (rows come standardised)."""

    backend = "fake"

    def load_backend(self) -> None:
        pass

    @property
    def algorithm(self) -> str:
        return "distance"

    def fit_model(
        self, rows: np.ndarray, options: dict[str, Any], contamination: float
    ) -> tuple[Any, np.ndarray]:
        return None, self.score_model(None, rows)

    def score_model(self, model: Any, rows: np.ndarray) -> np.ndarray:
        return np.linalg.norm(rows, axis=1)

    def model_arrays(self, model: Any, rows: np.ndarray) -> dict[str, np.ndarray]:
        return {}

    def restore_model(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Any:
        return None


def _backend(task: Task, cls: type) -> Backend:
    return Backend(task, "fake", f"tests.fakes:{cls.__name__}", (), "fakes", weightless=True)


# the graph family's one backend fits a real GNN on a random graph in about a second, so
# its HTTP tests (tests/tasks/graph) already run at this speed: it has no fake
FAKES = TaskFamily(
    name="fakes",
    backends=(
        _backend(Task.EMBED, FakeEmbedder),
        _backend(Task.RERANK, FakeReranker),
        _backend(Task.CLASSIFY, FakeClassifier),
        _backend(Task.CHAT, FakeChat),
        _backend(Task.FORECAST, FakeForecaster),
        _backend(Task.DETECT, FakeDetector),
        _backend(Task.DOCUMENT, FakeDocuments),
        _backend(Task.ANOMALY, FakeAnomaly),
    ),
)
