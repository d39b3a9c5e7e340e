"""OpenAI's ``POST /v1/embeddings`` (also Infinity's ``/embeddings``)."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Response

from corral.observe import current_trace
from corral.server.deps import RouterDep
from corral.server.schemas import ERROR_RESPONSES
from corral.tasks.chat.token_ids import input_texts
from corral.tasks.text.embedding import as_base64, embed_texts, shorten
from corral.tasks.text.schemas import EmbeddingsRequest, EmbeddingsResponse

api = APIRouter(prefix="/v1", tags=["openai"], responses=ERROR_RESPONSES)


@api.post("/embeddings", response_model=EmbeddingsResponse)
async def create_embeddings(body: EmbeddingsRequest, router: RouterDep) -> Response:
    """OpenAI's embeddings (also at Infinity's ``/embeddings``): up to
    ``server.limits.max_embedding_inputs`` texts, or tiktoken token ids."""
    trace = current_trace()
    trace.user = body.user
    embedded = await embed_texts(
        router, body.model, input_texts(body.input, body.model), prompt_name=body.prompt_name
    )
    vectors = embedded.vectors
    if body.dimensions is not None:
        vectors = shorten(vectors, body.dimensions)
    as_text = body.encoding_format == "base64"
    data = [
        {"object": "embedding", "index": i, "embedding": as_base64(v) if as_text else v}
        for i, v in enumerate(vectors)
    ]
    usage = {"prompt_tokens": embedded.tokens, "total_tokens": embedded.tokens}
    # EmbeddingsResponse's shape, written by orjson straight from the float32 rows: no
    # Python float per value (``response_model`` documents it)
    content = {"object": "list", "data": data, "model": embedded.handle.name, "usage": usage}
    return Response(
        orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY),
        media_type="application/json",
        headers=body.ignored_header(),
    )
