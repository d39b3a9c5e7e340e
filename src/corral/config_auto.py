"""``routing.auto``: the rule ``model: "auto"`` follows on each task endpoint.

Every field has a default, so ``auto`` works with no section at all: each rule takes the
task's configured experts in config order, which is also the order of cost (write the
cheapest first). With one expert for a task, ``auto`` is that expert.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AutoConfig",
    "ClassifyAuto",
    "DetectAuto",
    "DocumentAuto",
    "ForecastAuto",
    "RerankAuto",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ForecastAuto(_Strict):
    """Per series, a rolling-origin backtest on the series' own tail picks the expert."""

    experts: list[str] | None = Field(
        None, description="Candidates, cheapest first; default: every forecast expert."
    )
    tolerance: float = Field(
        0.1, ge=0, le=10, description="A cheaper expert within this share of the best error wins."
    )
    folds: int = Field(2, ge=1, le=8, description="Backtest origins, each one horizon apart.")
    max_context: int = Field(
        512, ge=8, le=100_000, description="The backtest fits on at most this many last values."
    )
    max_seconds: float = Field(
        20.0, gt=0, description="Backtest time limit; past it the first candidate answers."
    )


class RerankAuto(_Strict):
    """Retrieve then rerank: the bi-encoder over every passage, the cross-encoder over its
    top ``top_k``. Either alone when only one kind is configured."""

    retriever: str | None = Field(None, description="A bi-encoder rerank expert.")
    reranker: str | None = Field(None, description="A cross-encoder rerank expert.")
    top_k: int = Field(20, ge=1, le=10_000)


class DetectAuto(_Strict):
    """Smallest detector first; frames without a box at ``min_score`` go to the next."""

    experts: list[str] | None = Field(None, description="Smallest first; default: config order.")
    min_score: float = Field(0.5, ge=0, le=1)


class DocumentAuto(_Strict):
    """Text layer and OCR (the OCR expert reads a PDF's text layer first), then a layout
    model for pages where they found no key/value pair."""

    experts: list[str] | None = Field(None, description="Cheapest first; default: layout last.")


class ClassifyAuto(_Strict):
    cascade: str | None = Field(None, description="Cascade to run; default: the first one.")


class AutoConfig(_Strict):
    forecast: ForecastAuto = ForecastAuto()
    rerank: RerankAuto = RerankAuto()
    detect: DetectAuto = DetectAuto()
    document: DocumentAuto = DocumentAuto()
    classify: ClassifyAuto = ClassifyAuto()

    def expert_names(self) -> list[tuple[str, str]]:
        """(where, name) of the experts the rules name, for checking they exist."""
        named = [
            (f"auto.forecast.experts[{i}]", n) for i, n in enumerate(self.forecast.experts or [])
        ]
        named += [("auto.rerank.retriever", self.rerank.retriever or "")]
        named += [("auto.rerank.reranker", self.rerank.reranker or "")]
        named += [(f"auto.detect.experts[{i}]", n) for i, n in enumerate(self.detect.experts or [])]
        named += [
            (f"auto.document.experts[{i}]", n) for i, n in enumerate(self.document.experts or [])
        ]
        return [(where, name) for where, name in named if name]
