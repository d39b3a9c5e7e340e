"""Text embeddings through sentence-transformers."""

from __future__ import annotations

from pydantic import BaseModel, Field

from corral.config import Task
from corral.experts._sentence import Embedding, SentenceEncoderExpert

__all__ = ["EmbedInput", "Embedding", "SentenceTransformerEmbedder"]


class EmbedInput(BaseModel):
    texts: list[str] = Field(min_length=1, description="Texts to embed.")


class SentenceTransformerEmbedder(SentenceEncoderExpert[EmbedInput, list[Embedding]]):
    """Embed texts into vectors for search, clustering and similarity."""

    task = Task.EMBED
    backend = "sentence-transformers"
    input_model = EmbedInput
    normalize = False

    def prepare(self, request: EmbedInput) -> list[str]:
        return request.texts

    def finish(self, request: EmbedInput, outputs: list[Embedding]) -> list[Embedding]:
        return outputs
