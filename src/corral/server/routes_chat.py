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
from corral.routing import Coordinator
from corral.runtime import ExpertState, Runtime
from corral.server.deps import RuntimeDep
from corral.server.schemas_chat import ChatCompletionRequest

router = APIRouter(prefix="/v1", tags=["openai"])
AUTO = "auto"  # the model name that hands a request to the coordinator


@router.post("/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, runtime: RuntimeDep) -> Response:
    params = body.backend_params()
    if body.model == AUTO:
        return await _coordinate(runtime, params, body)
    handle = runtime.find(Task.CHAT, body.model)
    headers = {"x-corral-expert": handle.name}
    if not body.stream:
        result = await runtime.chat(handle, params)
        return JSONResponse({**result, "model": handle.name}, headers=headers)
    chunks = runtime.chat_stream(handle, params).__aiter__()
    first = await anext(chunks)  # errors before the first token still get a real status code
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return StreamingResponse(
        _sse(first, chunks, handle.name, include_usage),
        media_type="text/event-stream",
        headers={**headers, "cache-control": "no-cache"},
    )


async def _coordinate(
    runtime: Runtime, params: dict[str, Any], body: ChatCompletionRequest
) -> Response:
    """``model: "auto"``: the coordinator LLM answers, calling experts as tools."""
    routing = runtime.config.routing
    llm = runtime.find(Task.CHAT, routing.coordinator)
    others = [h for h in runtime.handles.values() if h.task == Task.CHAT and h is not llm]
    escalate = (
        runtime.find(Task.CHAT, routing.escalate_to)
        if routing.escalate_to
        else (next((h for h in others if h.state != ExpertState.UNAVAILABLE), None))
    )
    coordinator = Coordinator(
        runtime,
        llm,
        escalate_to=escalate,
        max_steps=routing.max_steps,
        deadline_s=routing.deadline_s,
    )
    result = await coordinator.run(params)
    trace = {"route": "coordinator", "steps": [dataclasses.asdict(s) for s in result.steps]}
    answer = {**result.response, "model": llm.name, "corral": trace}
    headers = {"x-corral-expert": llm.name, "x-corral-route": "coordinator"}
    if not body.stream:
        return JSONResponse(answer, headers=headers)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return StreamingResponse(
        _replay_as_sse(answer, include_usage), media_type="text/event-stream", headers=headers
    )


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
    first: dict[str, Any], rest: AsyncIterator[dict[str, Any]], model: str, include_usage: bool
) -> AsyncIterator[str]:
    async def all_chunks() -> AsyncIterator[dict[str, Any]]:
        yield first
        async for chunk in rest:
            yield chunk

    try:
        async for chunk in all_chunks():
            if not chunk.get("choices") and not include_usage:
                continue  # the usage-only chunk is sent only when asked for
            if not include_usage:
                chunk.pop("usage", None)
            yield f"data: {json.dumps({**chunk, 'model': model})}\n\n"
    except CorralError as exc:  # after the headers went out: report in-band, as OpenAI does
        yield f"data: {json.dumps({'error': {'message': exc.message, 'code': exc.code}})}\n\n"
    yield "data: [DONE]\n\n"
