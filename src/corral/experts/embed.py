"""Text embeddings through sentence-transformers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from corral.config import Task
from corral.experts._sentence import count_tokens, shared_sentence_transformer
from corral.experts.base import Expert

__all__ = ["EmbedInput", "Embedding", "SentenceTransformerEmbedder"]


class EmbedInput(BaseModel):
    texts: list[str] = Field(min_length=1, description="Texts to embed.")


@dataclass(frozen=True)
class Embedding:
    vector: np.ndarray
    tokens: int


class SentenceTransformerEmbedder(Expert[EmbedInput, str, Embedding, list[Embedding]]):
    """Embed texts into vectors for search, clustering and similarity."""

    task = Task.EMBED
    backend = "sentence-transformers"
    input_model = EmbedInput

    def load(self) -> None:
        self.model, self._key = shared_sentence_transformer(self.context)

    def unload(self) -> None:
        self.context.shared.release(self._key)
        del self.model

    def prepare(self, request: EmbedInput) -> list[str]:
        return request.texts

    def forward(self, items: list[str]) -> list[Embedding]:
        vectors: Any = self.model.encode(
            items, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
        )
        tokens = count_tokens(self.model, items)
        return [
            Embedding(np.asarray(v, dtype=np.float32), t)
            for v, t in zip(vectors, tokens, strict=True)
        ]

    def finish(self, request: EmbedInput, outputs: list[Embedding]) -> list[Embedding]:
        return outputs
