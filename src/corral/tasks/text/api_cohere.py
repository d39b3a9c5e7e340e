"""Cohere's API: ``POST /v2/rerank``, ``/v2/embed`` and v1's ``/v1/embed`` (v1's
``/v1/rerank`` is corral's own rerank route), served by the same router and experts."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Response

from corral.server.deps import RouterDep
from corral.server.schemas import ERROR_RESPONSES
from corral.tasks.text.api import rerank_response
from corral.tasks.text.embedding import as_base64, embed_texts, quantize, shorten
from corral.tasks.text.schemas import RerankRequest, RerankResponse, truncation
from corral.tasks.text.schemas_compat import CohereEmbedRequest, CohereEmbedResponse

api = APIRouter(tags=["cohere"], responses=ERROR_RESPONSES)


@api.post("/v2/rerank", response_model=RerankResponse, response_model_exclude_none=True)
async def rerank_v2(body: RerankRequest, router: RouterDep, response: Response) -> RerankResponse:
    """Cohere v2 rerank (``ClientV2.rerank``): results most relevant first."""
    return await rerank_response(body, router, response, api_version="2")


@api.post("/v2/embed", response_model=CohereEmbedResponse)
async def embed_v2(
    body: CohereEmbedRequest, router: RouterDep, response: Response
) -> CohereEmbedResponse:
    """Cohere v2 embed (``ClientV2.embed``): ``input_type`` picks the expert's prompt."""
    return await _embed(body, router, response, api_version="2")


@api.post("/v1/embed", response_model=CohereEmbedResponse)
async def embed_v1(
    body: CohereEmbedRequest, router: RouterDep, response: Response
) -> CohereEmbedResponse:
    """Cohere v1 embed (``Client.embed``): plain float lists unless embedding_types."""
    return await _embed(body, router, response, api_version="1")


async def _embed(
    body: CohereEmbedRequest, router: RouterDep, response: Response, api_version: str
) -> CohereEmbedResponse:
    texts = body.text_list
    embedded = await embed_texts(
        router,
        body.model,
        texts,
        input_type=body.input_type,
        truncate=truncation(body.truncate),
        max_tokens=body.max_tokens,
        param="texts",
    )
    vectors = embedded.vectors
    if body.output_dimension is not None:
        vectors = shorten(vectors, body.output_dimension, param="output_dimension")
    response.headers.update(body.ignored_header())
    meta = {
        "api_version": {"version": api_version},
        "billed_units": {"input_tokens": embedded.tokens},
    }
    by_type = body.embedding_types is not None or api_version == "2"
    embeddings: list[list[float]] | dict[str, list[Any]]
    if by_type:
        embeddings = {kind: _as_type(vectors, kind) for kind in body.embedding_types or ["float"]}
    else:
        embeddings = vectors.tolist()
    return CohereEmbedResponse(
        id=uuid.uuid4().hex,
        response_type="embeddings_by_type" if by_type else "embeddings_floats",
        embeddings=embeddings,
        texts=texts,
        meta=meta,
    )


def _as_type(vectors: Any, kind: str) -> list[Any]:
    if kind == "float":
        return vectors.tolist()  # type: ignore[no-any-return]
    if kind == "base64":
        return [as_base64(v) for v in vectors]
    return quantize(vectors, kind)
