"""Hugging Face TEI's and Infinity's routes at the root, served by the same router and
experts as ``/v1``: ``POST /rerank`` (TEI's shape when the body has ``texts``, else
Infinity's: Cohere's ``results`` with each document as a plain string), ``/embed``,
``/embed_sparse``, Infinity's ``/embeddings``, and ``GET /info``, ``/health``.

vLLM's rerank answer differs from Infinity's only in the document (``{"text": ...}``)
and clients send both the same request, so vLLM clients use ``/v1/rerank`` (their base
URL ending in ``/v1``, as for vLLM's own OpenAI API)."""

from __future__ import annotations

import contextlib
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from corral import __version__
from corral._vectors import unit_rows
from corral.config import Task
from corral.errors import ModelNotFound, NotFound
from corral.runtime import ExpertHandle, ExpertHost
from corral.server.deps import RouterDep, RuntimeDep
from corral.server.schemas import ERROR_RESPONSES
from corral.tasks.text.api import rerank_response
from corral.tasks.text.api_openai import create_embeddings
from corral.tasks.text.embedding import embed_texts, shorten
from corral.tasks.text.ranking import rank_documents
from corral.tasks.text.schemas import EmbeddingsResponse, RerankRequest, truncation
from corral.tasks.text.schemas_compat import TeiEmbedRequest, TeiRank

api = APIRouter(tags=["tei", "infinity"], responses=ERROR_RESPONSES)
api.post("/embeddings", response_model=EmbeddingsResponse, summary="Infinity's embeddings")(
    create_embeddings
)

_RANKED: dict[int | str, dict[str, Any]] = {
    200: {"description": "TEI: a list of {index, score, text}; with `documents`: Cohere's shape"}
}


@api.post("/rerank", response_model=None, responses=_RANKED)
async def rerank(body: RerankRequest, router: RouterDep, response: Response) -> Any:
    """TEI's rerank (``texts``: a list, most relevant first), or Infinity's
    (``documents``: Cohere's ``results``, documents as strings)."""
    if body.texts is None:
        reply = await rerank_response(body, router, response, api_version="1")
        answer = reply.model_dump(exclude_none=True)
        for result in answer["results"]:
            if "document" in result:
                result["document"] = result["document"]["text"]
        return {"object": "rerank", **answer}
    ranked = await rank_documents(
        router,
        body.model,
        body.query,
        body.texts,
        top_n=body.top_n,
        raw_scores=body.raw_scores,
        max_tokens_per_doc=body.max_tokens_per_doc,
        truncate=body.truncation,
    )
    return [
        TeiRank(
            index=i,
            score=ranked.scores[i],
            text=body.texts[i] if body.return_text or body.return_documents else None,
        ).model_dump(exclude_none=True)
        for i in ranked.order
    ]


@api.post("/embed", response_model=list[list[float]])
async def embed(body: TeiEmbedRequest, router: RouterDep) -> list[list[float]]:
    """TEI's embed: one vector per input, unit length unless ``normalize: false``."""
    embedded = await embed_texts(
        router,
        body.model,
        body.texts,
        prompt_name=body.prompt_name,
        truncate=truncation(body.truncate, body.truncation_direction),
        param="inputs",
    )
    vectors = embedded.vectors
    if body.dimensions is not None:
        vectors = shorten(vectors, body.dimensions)
    elif body.normalize:
        vectors = unit_rows(vectors)
    return vectors.tolist()  # type: ignore[no-any-return]


@api.post("/embed_sparse")
async def embed_sparse(runtime: RuntimeDep) -> None:
    """TEI's sparse embeddings: corral serves dense embedders only, so always a 404."""
    dense = ", ".join(h.name for h in runtime.handles.values() if h.task == Task.EMBED)
    raise NotFound(
        "no sparse (SPLADE) embedding expert can be configured in corral; dense embeddings "
        f"are at POST /embed and /v1/embeddings (experts: {dense or 'none'})",
        param="model",
    )


@api.get("/info")
async def info(runtime: RuntimeDep) -> dict[str, Any]:
    """TEI's model info, for the default embedding (else rerank) expert."""
    handle = _tei_expert(runtime)
    if handle is None:
        raise NotFound("no embedding or rerank expert is configured", param="model")
    limits = runtime.config.server.limits
    kind = (
        {"reranker": {"id2label": {"0": "LABEL_0"}}}
        if handle.task == Task.RERANK
        else {"embedding": {"pooling": "model"}}
    )
    return {
        "model_id": handle.spec.model,
        "model_sha": None,
        "model_dtype": "float32",
        "model_type": kind,
        "max_concurrent_requests": 512,
        "max_input_length": limits.max_text_chars,
        "max_batch_tokens": handle.spec.batch.max_tokens,
        "max_batch_requests": handle.spec.batch.max_size,
        "max_client_batch_size": limits.max_embedding_inputs,
        "auto_truncate": True,
        "tokenization_workers": 1,
        "version": __version__,
        "sha": None,
        "docker_label": None,
    }


def _tei_expert(runtime: ExpertHost) -> ExpertHandle | None:
    for task in (Task.EMBED, Task.RERANK):
        with contextlib.suppress(ModelNotFound):
            return runtime.find(task, None)
    return None


@api.get("/health")
async def health(request: Request) -> JSONResponse:
    """TEI's health: 200 once the experts have loaded (as /readyz), else 503."""
    runtime: ExpertHost = request.app.state.runtime
    loading = request.app.state.loading
    ready = runtime.ready and (loading is None or loading.done())
    return JSONResponse({} if ready else {"status": "loading"}, status_code=200 if ready else 503)
