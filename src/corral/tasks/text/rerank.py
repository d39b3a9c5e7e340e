"""Reranking: score how relevant each document is to a query.

``cross-encoder`` reads query and document together (sentence-transformers
CrossEncoder, all pairs of all waiting requests in one batched ``predict``; with
``options.runtime: onnx`` its guarded ONNX export, see ``rerank_onnx``).
``bi-encoder`` embeds them separately and compares; it is the fallback when no
cross-encoder is installed (the built-in default config).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from corral.config import LimitsConfig, Task
from corral.experts._memory import torch_bytes
from corral.experts.base import Expert, require
from corral.experts.operation import Operation
from corral.experts.options import EncoderOptions
from corral.input_limits import check_texts
from corral.tasks.text._sentence import (
    Embedding,
    SentenceEncoderExpert,
    Truncate,
    clip_text,
    cuts_text,
)
from corral.tasks.text.rerank_onnx import OnnxCrossEncoder, cross_encoder_runtime

__all__ = [
    "RERANK",
    "BiEncoderReranker", "CrossEncoderReranker", "RerankInput", "RerankScores"]


class RerankInput(BaseModel):
    query: str = Field(min_length=1, description="What the caller is looking for.")
    documents: list[str] = Field(min_length=1, description="Candidate passages to score.")
    max_tokens_per_doc: int | None = Field(None, ge=1, description="Cut each document to this.")
    truncate: Truncate = Field("end", description="Which side of a too-long document is cut.")

    def check_limits(self, limits: LimitsConfig) -> None:
        """``server.limits`` on this input (413 naming the limit), as built over HTTP
        or by a tool call."""
        check_texts([self.query], limits, param="query")
        check_texts(self.documents, limits, param="documents")


@dataclass(frozen=True)
class RerankScores:
    """Per document, in input order: relevance in [0, 1] and the model's raw score."""

    scores: list[float]
    raw: list[float]
    tokens: int


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


RERANK = Operation(Task.RERANK, RerankInput, RerankScores)


class CrossEncoderReranker(Expert[RerankInput, tuple[str, str], tuple[float, int], RerankScores]):
    """Rank documents by relevance to a query (cross-encoder)."""

    options_model = EncoderOptions
    task = Task.RERANK
    backend = "cross-encoder"
    operation = RERANK

    def load(self) -> None:
        st = require("sentence_transformers", "text")
        torch_model = st.CrossEncoder(
            str(self.context.path), device=self.context.device, local_files_only=True
        )
        self.model: Any = torch_model
        self._identity = require("torch", "text").nn.Identity()
        # ``prepare`` tokenizes on the event loop, ``forward`` on the worker thread, and a
        # fast tokenizer's truncation/padding state is not thread-safe
        self._lock = threading.Lock()
        # options.runtime: onnx swaps in the guarded ONNX export (rerank_onnx)
        self.model, self.runtime_in_use = cross_encoder_runtime(
            self.context, torch_model, self._logits
        )

    def unload(self) -> None:
        del self.model

    def resident_bytes(self) -> int | None:
        return torch_bytes(self.model)

    def prepare(self, request: RerankInput) -> list[tuple[str, str]]:
        documents = request.documents
        if _clips(request):
            # the pair is cut at the model's length from the end anyway: only cut here when
            # asked for less, or for the other side (the query keeps its tokens)
            tokenizer = self.model.tokenizer
            with self._lock:
                room = self.model.max_seq_length - 3
                room -= len(tokenizer(request.query, add_special_tokens=False)["input_ids"])
                limit = min(room, request.max_tokens_per_doc or room)
                documents = [
                    clip_text(tokenizer, d, limit, request.truncate, f"documents[{i}]")
                    for i, d in enumerate(documents)
                ]
        return [(request.query, doc) for doc in documents]

    def prepare_blocks(self, request: RerankInput) -> bool:
        return _clips(request)

    def forward(self, items: list[tuple[str, str]]) -> list[tuple[float, int]]:
        with self._lock:
            return self._score(items)

    def _logits(self, items: list[tuple[str, str]]) -> np.ndarray:
        """One raw relevance score per pair, from whichever runtime serves."""
        if isinstance(self.model, OnnxCrossEncoder):
            logits = self.model.logits(items, self.batch_size)
        else:
            predicted: Any = self.model.predict(
                items,
                batch_size=self.batch_size,
                activation_fn=self._identity,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            logits = np.asarray(predicted, dtype=np.float64)
        if logits.ndim == 2:  # two-label rerankers: relevant minus not relevant
            logits = logits[:, -1] - logits[:, 0]
        return logits

    def _score(self, items: list[tuple[str, str]]) -> list[tuple[float, int]]:
        logits = self._logits(items)
        encoded = self.model.tokenizer(
            [q for q, _ in items],
            [d for _, d in items],
            truncation=True,
            max_length=self.model.max_seq_length,
        )
        tokens = [len(ids) for ids in encoded["input_ids"]]
        return list(zip(logits.tolist(), tokens, strict=True))

    def finish(self, request: RerankInput, outputs: list[tuple[float, int]]) -> RerankScores:
        raw = np.array([logit for logit, _ in outputs])
        return RerankScores(
            scores=_sigmoid(raw).tolist(), raw=raw.tolist(), tokens=sum(t for _, t in outputs)
        )


class BiEncoderReranker(SentenceEncoderExpert[RerankInput, RerankScores]):
    """Rank documents by relevance to a query (embedding similarity)."""

    options_model = EncoderOptions
    task = Task.RERANK
    backend = "bi-encoder"
    operation = RERANK

    def prepare(self, request: RerankInput) -> list[str]:
        query = self.prompt(input_type="search_query") + request.query
        documents = self.fit(
            request.documents,
            self.prompt(input_type="search_document"),
            request.truncate,
            request.max_tokens_per_doc,
            "documents",
        )
        return [query, *documents]

    def prepare_blocks(self, request: RerankInput) -> bool:
        return _clips(request)

    def finish(self, request: RerankInput, outputs: list[Embedding]) -> RerankScores:
        query, *docs = (o.vector for o in outputs)
        cosine = np.stack(docs) @ query
        return RerankScores(
            scores=((cosine + 1.0) / 2.0).clip(0.0, 1.0).tolist(),
            raw=cosine.tolist(),
            tokens=sum(o.tokens for o in outputs),
        )


def _clips(request: RerankInput) -> bool:
    """Whether the documents are cut here, tokenizing them (``cuts_text``)."""
    return cuts_text(request.truncate, request.max_tokens_per_doc)
