"""The sentence-transformers encoder every embedding-based expert runs on.

Embedding, bi-encoder rerank and similarity classification all embed a flat list of
texts; they differ only in how a request becomes texts (``prepare``) and what the
vectors mean (``finish``). One copy of the weights is shared by all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np
from pydantic import BaseModel

from corral.experts._memory import torch_bytes
from corral.experts.base import Expert, LoadContext, require

RequestT = TypeVar("RequestT", bound=BaseModel)
ResultT = TypeVar("ResultT")


@dataclass(frozen=True)
class Embedding:
    vector: np.ndarray
    tokens: int


def shared_sentence_transformer(context: LoadContext) -> tuple[Any, tuple[str, ...]]:
    """Return (model, key); pass ``key`` to ``context.shared.release`` on unload."""
    st = require("sentence_transformers", "text")
    key = ("sentence-transformers", str(context.path), context.device)

    def build() -> Any:
        return st.SentenceTransformer(
            str(context.path), device=context.device, local_files_only=True
        )

    return context.shared.acquire(key, build), key


def count_tokens(model: Any, texts: list[str]) -> list[int]:
    """Tokens per text as the model sees them (special tokens included, truncated)."""
    encoded = model.tokenizer(
        texts, add_special_tokens=True, truncation=True, max_length=model.max_seq_length
    )
    return [len(ids) for ids in encoded["input_ids"]]


class SentenceEncoderExpert(Expert[RequestT, str, Embedding, ResultT]):
    """Loads the shared SentenceTransformer and embeds a batch of texts in one ``encode``."""

    # unit-length vectors for experts that compare them by dot product; embeddings are
    # returned exactly as the model's own pipeline makes them
    normalize: ClassVar[bool] = True

    def load(self) -> None:
        self.model, self._key = shared_sentence_transformer(self.context)

    def unload(self) -> None:
        self.context.shared.release(self._key)
        del self.model

    def resident_bytes(self) -> int | None:
        return torch_bytes(self.model)

    def forward(self, items: list[str]) -> list[Embedding]:
        vectors: Any = self.model.encode(
            items,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=self.normalize,
            show_progress_bar=False,
        )
        tokens = count_tokens(self.model, items)
        return [
            Embedding(np.asarray(v, dtype=np.float32), t)
            for v, t in zip(vectors, tokens, strict=True)
        ]
