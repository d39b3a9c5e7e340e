"""OpenAI-compatible endpoints: ``/v1/embeddings`` and ``/v1/models``."""

from __future__ import annotations

import base64
import time

import numpy as np
from fastapi import APIRouter

from corral._vectors import unit_rows
from corral.access import current_grant, require_expert
from corral.config import CascadeConfig, Task
from corral.errors import InvalidRequest, ModelNotFound
from corral.experts.embed import EmbedInput
from corral.observe import current_trace
from corral.observe.cost import llm_equivalent
from corral.runtime import ExpertHandle
from corral.server.deps import RouterDep, RuntimeDep
from corral.server.limits import check_texts
from corral.server.schemas import (
    ERROR_RESPONSES,
    EmbeddingData,
    EmbeddingsRequest,
    EmbeddingsResponse,
    ModelCard,
    ModelList,
    Usage,
)

api = APIRouter(prefix="/v1", tags=["openai"], responses=ERROR_RESPONSES)
_STARTED = int(time.time())


@api.post("/embeddings", response_model=EmbeddingsResponse)
async def create_embeddings(body: EmbeddingsRequest, router: RouterDep) -> EmbeddingsResponse:
    texts = body.texts
    check_texts(texts, router.runtime.config.server.limits)
    current_trace().llm_tokens = llm_equivalent(Task.EMBED, texts)
    handle, results = await router.serve(Task.EMBED, body.model, EmbedInput(texts=texts))
    vectors = np.stack([r.vector for r in results]).astype(np.float32, copy=False)
    if body.dimensions is not None:
        vectors = _shorten(vectors, body.dimensions)
    tokens = sum(r.tokens for r in results)
    return EmbeddingsResponse(
        data=[
            EmbeddingData(index=i, embedding=_encode(v, body.encoding_format))
            for i, v in enumerate(vectors)
        ],
        model=handle.name,
        usage=Usage(prompt_tokens=tokens, total_tokens=tokens),
    )


def _shorten(vectors: np.ndarray, dimensions: int) -> np.ndarray:
    """Matryoshka-style truncation, renormalised to unit length."""
    if dimensions > vectors.shape[1]:
        raise InvalidRequest(
            f"dimensions={dimensions} exceeds the model's {vectors.shape[1]}", param="dimensions"
        )
    return unit_rows(vectors[:, :dimensions])


def _encode(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":  # little-endian float32, as OpenAI sends it
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()  # type: ignore[no-any-return]


@api.get("/models", response_model=ModelList)
async def list_models(runtime: RuntimeDep) -> ModelList:
    """Every expert, then every cascade (usable as ``model`` on its task's endpoint); with
    a key limited to some experts, those only."""
    grant = current_grant()
    allowed = grant.allows if grant is not None else lambda _: True
    experts = [_card(h) for h in runtime.handles.values() if allowed(h.name)]
    cascades = [
        _cascade_card(c)
        for c in runtime.config.routing.cascades
        if all(allowed(stage.expert) for stage in c.stages)
    ]
    return ModelList(data=experts + cascades)


@api.get("/models/{name}", response_model=ModelCard)
async def get_model(name: str, runtime: RuntimeDep) -> ModelCard:
    spec = runtime.config.model_named(name)
    if spec is None:
        grant = current_grant()
        usable = [n for n in runtime.handles if grant is None or grant.allows(n)]
        raise ModelNotFound(f"no model {name!r}; available: {', '.join(usable)}", param="model")
    require_expert(spec.name)
    return _card(runtime.handles[spec.name])


def _cascade_card(cascade: CascadeConfig) -> ModelCard:
    return ModelCard(
        id=cascade.name,
        created=_STARTED,
        model=" -> ".join(stage.expert for stage in cascade.stages),
        task=cascade.task.value,
        backend="cascade",
        state="ready",
        default=False,
        aliases=[],
        stages=[stage.expert for stage in cascade.stages],
    )


def _card(handle: ExpertHandle) -> ModelCard:
    state, reason = handle.status()  # an unreachable upstream shows as unavailable
    return ModelCard(
        id=handle.name,
        created=_STARTED,
        model=handle.spec.model,
        task=handle.task.value if handle.task else None,
        backend=handle.resolved.backend,
        state=state,
        default=handle.spec.default,
        aliases=list(handle.spec.aliases),
        memory_bytes=handle.memory_bytes,
        reason=reason or None,
    )
