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
from corral.runtime import ExpertHandle
from corral.server.deps import RouterDep
from corral.server.schemas import ERROR_RESPONSES
from corral.tasks.chat.compat import note_request, shape_chunk, shape_reply
from corral.tasks.chat.schemas import ChatCompletionRequest

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
    note_request(body)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    ignored = body.ignored_header()
    if body.model == AUTO:
        return await _auto(router, params, body.stream, include_usage, body, ignored)
    handle = router.pick(Task.CHAT, body.model)
    if not body.stream:
        answered, result = await router.dispatch.chat(handle, params)
        router.answered(handle, answered, "explicit")
        reply = shape_reply(body, {**result, "model": answered.name})
        return JSONResponse(reply, headers=ignored)
    # fallbacks apply until the first chunk, so errors before it still get a status code
    answered, chunks = await router.dispatch.chat_stream(handle, params)
    router.answered(handle, answered, "explicit")
    shaped = (shape_chunk(body, chunk) async for chunk in chunks)
    return StreamingResponse(
        _sse(shaped, answered.name, include_usage),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", **ignored},
    )


async def _auto(
    router: Router,
    params: dict[str, Any],
    stream: bool,
    usage: bool,
    body: ChatCompletionRequest,
    headers: dict[str, str],
) -> Response:
    """``model: "auto"``: semantic routes, else the coordinator LLM calling experts as tools."""
    answered, result = await auto_chat(router, params)
    answer = shape_reply(body, {**result, "model": answered.name})
    if not stream:
        return JSONResponse(answer, headers=headers)
    return StreamingResponse(
        _replay_as_sse(answer, usage),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", **headers},
    )


async def auto_chat(router: Router, params: dict[str, Any]) -> tuple[ExpertHandle, dict[str, Any]]:
    """``model: "auto"``'s whole answer, with the routing summary in ``corral``."""
    answered, result = await router.auto(params)
    trace = current_trace()
    trace.llm_tokens = _llm_alone(params, result)
    summary = {
        "trace_id": trace.id,
        "route": trace.route,
        "decisions": [dataclasses.asdict(d) for d in trace.decisions],
        "steps": [dataclasses.asdict(s) for s in trace.steps],
    }
    return answered, {**result, "corral": summary}


async def chat_once(
    router: Router, model: str | None, params: dict[str, Any]
) -> tuple[ExpertHandle, dict[str, Any]]:
    """A whole chat completion from the named expert (or ``auto``), with fallbacks: the
    path /v1/completions and /v1/responses share with this route."""
    if model == AUTO:
        return await auto_chat(router, params)
    handle = router.pick(Task.CHAT, model)
    answered, result = await router.dispatch.chat(handle, params)
    router.answered(handle, answered, "explicit" if model else "default")
    return answered, result


async def chat_chunks(
    router: Router, model: str | None, params: dict[str, Any]
) -> tuple[ExpertHandle, AsyncIterator[dict[str, Any]]]:
    """Chat completion chunks, as ``chat_once``; ``auto`` answers whole, replayed."""
    if model == AUTO:
        answered, result = await auto_chat(router, params)
        return answered, _replay(result)
    handle = router.pick(Task.CHAT, model)
    answered, chunks = await router.dispatch.chat_stream(handle, params)
    router.answered(handle, answered, "explicit" if model else "default")
    return answered, chunks


async def _replay(answer: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    choice = answer["choices"][0]
    message = {k: v for k, v in choice["message"].items() if v is not None}
    yield {"choices": [{"index": 0, "delta": message, "finish_reason": None}]}
    finish = choice.get("finish_reason", "stop")
    yield {"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
    if answer.get("usage"):
        yield {"choices": [], "usage": answer["usage"]}


def _llm_alone(params: dict[str, Any], answer: dict[str, Any]) -> tuple[int, int]:
    """Tokens the default LLM would have read and written to answer on its own."""
    prompt = " ".join(str(m.get("content") or "") for m in params["messages"])
    reply = str(answer["choices"][0]["message"].get("content") or "")
    return llm_tokens(prompt), llm_tokens(reply)


async def _replay_as_sse(answer: dict[str, Any], include_usage: bool) -> AsyncIterator[str]:
    """A finished completion as chat.completion.chunk events (content, then finish)."""
    base = {
        "id": answer.get("id"),
        "object": "chat.completion.chunk",
        "created": answer.get("created"),
        "model": answer["model"],
    }
    async for chunk in _replay(answer):
        if not chunk["choices"]:  # the usage chunk: only when asked for, with the summary
            if not include_usage:
                continue
            chunk = {**chunk, "corral": answer["corral"]}
        yield f"data: {json.dumps({**base, **chunk})}\n\n"
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
