"""The one embeddings path behind every embeddings route (OpenAI, Cohere, TEI, Infinity):
limits, the router with its fallbacks, and the vector formats each API answers in."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np

from corral._vectors import unit_rows
from corral.config import Task
from corral.errors import InvalidRequest
from corral.input_limits import check_texts
from corral.observe import current_trace
from corral.observe.cost import llm_equivalent
from corral.routing import Router
from corral.runtime import ExpertHandle
from corral.tasks.text._sentence import Truncate
from corral.tasks.text.embed import EmbedInput

__all__ = ["Embedded", "as_base64", "embed_texts", "quantize", "shorten"]


@dataclass(frozen=True)
class Embedded:
    handle: ExpertHandle  # the expert that answered (a fallback, maybe)
    vectors: np.ndarray  # float32, one row per input text
    tokens: int


async def embed_texts(
    router: Router,
    model: str | None,
    texts: list[str],
    *,
    prompt_name: str | None = None,
    input_type: str | None = None,
    truncate: Truncate = "end",
    max_tokens: int | None = None,
    param: str = "input",
) -> Embedded:
    """Embed up to ``server.limits.max_embedding_inputs`` texts. A request larger than
    the expert's batch is sent in batch-sized parts, one after another, so other
    requests' batches run in between and no forward pass is larger than configured."""
    limits = router.runtime.config.server.limits
    check_texts(texts, limits, param=param, max_items=limits.max_embedding_inputs)
    current_trace().llm_tokens = llm_equivalent(Task.EMBED, texts)
    handle = router.pick(Task.EMBED, model)
    answered, results = handle, []
    for part in _parts(texts, handle.spec.batch.max_size, handle.spec.batch.max_tokens):
        request = EmbedInput(
            texts=part,
            prompt_name=prompt_name,
            input_type=input_type,
            truncate=truncate,
            max_tokens=max_tokens,
        )
        answered, embeddings = await router.dispatch.submit(handle, request)
        results += embeddings
    router.answered(handle, answered, "explicit" if model else "default")
    vectors = np.stack([r.vector for r in results]).astype(np.float32, copy=False)
    return Embedded(answered, vectors, sum(r.tokens for r in results))


def _parts(texts: list[str], max_items: int, max_tokens: int | None) -> list[list[str]]:
    """Consecutive parts of at most ``max_items`` texts and, with a token cap, at most
    ``max_tokens`` padded tokens (items x longest, ~4 characters a token) each."""
    parts: list[list[str]] = []
    current: list[str] = []
    longest = 0
    for text in texts:
        tokens = len(text) // 4 + 2
        widest = max(longest, tokens)
        too_wide = max_tokens is not None and (len(current) + 1) * widest > max_tokens
        if current and (len(current) >= max_items or too_wide):
            parts.append(current)
            current, widest = [], tokens
        current.append(text)
        longest = widest
    return [*parts, current] if current else parts


def shorten(vectors: np.ndarray, dimensions: int, param: str = "dimensions") -> np.ndarray:
    """Matryoshka-style truncation, renormalised to unit length."""
    if dimensions > vectors.shape[1]:
        raise InvalidRequest(
            f"{param}={dimensions} exceeds the model's {vectors.shape[1]}", param=param
        )
    return unit_rows(vectors[:, :dimensions])


def as_base64(vector: np.ndarray) -> str:
    """Little-endian float32, base64: OpenAI's and Cohere's ``base64`` format."""
    return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")


def quantize(vectors: np.ndarray, kind: str) -> list[list[int]]:
    """Cohere's compressed embedding types. ``int8``/``uint8``: each value scaled by the
    request's largest magnitude onto [-127, 127] (uint8: shifted by 128); ``binary``/
    ``ubinary``: one sign bit per dimension packed 8 to a byte (binary: minus 128)."""
    if kind in ("binary", "ubinary"):
        packed = np.packbits(vectors > 0, axis=1).astype(np.int16)
        return (packed - 128 if kind == "binary" else packed).tolist()  # type: ignore[no-any-return]
    scale = float(np.abs(vectors).max()) or 1.0
    ints = np.rint(vectors / scale * 127).astype(np.int16)
    return (ints + 128 if kind == "uint8" else ints).tolist()  # type: ignore[no-any-return]
