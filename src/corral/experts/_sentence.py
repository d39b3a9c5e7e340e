"""Loading a SentenceTransformer once, shared by every expert that uses the same weights."""

from __future__ import annotations

from typing import Any

from corral.experts.base import LoadContext, require


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
