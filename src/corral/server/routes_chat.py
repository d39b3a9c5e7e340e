"""``POST /v1/chat/completions``: OpenAI's shape, streamed as server-sent events on request."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse, StreamingResponse

from corral.config import Task
from corral.errors import CorralError
from corral.observe import current_trace
from corral.observe.cost import llm_tokens
from corral.routing import Router
from corral.server.deps import RouterDep
from corral.server.schemas import ERROR_RESPONSES
from corral.server.schemas_chat import ChatCompletionRequest

api = APIRouter(prefix="/v1", tags=["openai"], responses=ERROR_RESPONSES)
AUTO = "auto"  # the model name that hands a request to the coordinator


_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A chat completion, or its chunks as server-sent events with stream",
        "content": {"application/json": {}, "text/event-stream": {}},
    }
}


@api.post("/chat/completions", response_model=None, responses=_ANSWERS)
async def chat_completions(body: ChatCompletionRequest, router: RouterDep) -> Response:
    params = body.backend_params()
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    if body.model == AUTO:
        return await _auto(router, params, body.stream, include_usage)
    handle = router.pick(Task.CHAT, body.model)
    if not body.stream:
        answered, result = await router.chat(handle, params)
        router.answered(handle, answered, "explicit")
        return JSONResponse({**result, "model": answered.name})
    # fallbacks apply until the first chunk, so errors before it still get a status code
    answered, chunks = await router.chat_stream(handle, params)
    router.answered(handle, answered, "explicit")
    return StreamingResponse(
        _sse(chunks, answered.name, include_usage),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache"},
    )


async def _auto(router: Router, params: dict[str, Any], stream: bool, usage: bool) -> Response:
    """``model: "auto"``: semantic routes, else the coordinator LLM calling experts as tools."""
    answered, result = await router.auto(params)
    trace = current_trace()
    trace.llm_tokens = _llm_alone(params, result)
    summary = {
        "trace_id": trace.id,
        "route": trace.route,
        "decisions": [dataclasses.asdict(d) for d in trace.decisions],
        "steps": [dataclasses.asdict(s) for s in trace.steps],
    }
    answer = {**result, "model": answered.name, "corral": summary}
    if not stream:
        return JSONResponse(answer)
    return StreamingResponse(
        _replay_as_sse(answer, usage),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache"},
    )


def _llm_alone(params: dict[str, Any], answer: dict[str, Any]) -> tuple[int, int]:
    """Tokens the default LLM would have read and written to answer on its own."""
    prompt = " ".join(str(m.get("content") or "") for m in params["messages"])
    reply = str(answer["choices"][0]["message"].get("content") or "")
    return llm_tokens(prompt), llm_tokens(reply)


async def _replay_as_sse(answer: dict[str, Any], include_usage: bool) -> AsyncIterator[str]:
    """A finished completion as chat.completion.chunk events (content, then finish)."""
    choice = answer["choices"][0]
    base = {
        "id": answer.get("id"),
        "object": "chat.completion.chunk",
        "created": answer.get("created"),
        "model": answer["model"],
    }
    message = {k: v for k, v in choice["message"].items() if v is not None}
    deltas = [
        {"index": 0, "delta": message, "finish_reason": None},
        {"index": 0, "delta": {}, "finish_reason": choice.get("finish_reason", "stop")},
    ]
    for delta in deltas:
        yield f"data: {json.dumps({**base, 'choices': [delta]})}\n\n"
    if include_usage and answer.get("usage"):
        final = {**base, "choices": [], "usage": answer["usage"], "corral": answer["corral"]}
        yield f"data: {json.dumps(final)}\n\n"
    yield "data: [DONE]\n\n"


async def _sse(
    chunks: AsyncIterator[dict[str, Any]], model: str, include_usage: bool
) -> AsyncIterator[str]:
    try:
        async for chunk in chunks:
            if not chunk.get("choices") and not include_usage:
                continue  # the usage-only chunk is sent only when asked for
            if not include_usage:
                chunk.pop("usage", None)
            yield f"data: {json.dumps({**chunk, 'model': model})}\n\n"
    except CorralError as exc:  # after the headers went out: report in-band, as OpenAI does
        yield f"data: {json.dumps({'error': {'message': exc.message, 'code': exc.code}})}\n\n"
    yield "data: [DONE]\n\n"
