"""``POST /v1/responses`` (OpenAI's Responses API, what the Agents SDK calls): text in
and out, function tools, ``previous_response_id``, streamed as typed events on request.
Each turn is one chat completion through the same router and experts as
``/v1/chat/completions``; ``GET``/``DELETE /v1/responses/{id}`` read and drop one."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from corral.errors import CorralError
from corral.observe import current_trace
from corral.server.deps import RouterDep
from corral.server.schemas import ERROR_RESPONSES
from corral.tasks.chat.api import chat_chunks, chat_once
from corral.tasks.chat.responses import (
    ResponseStore,
    as_chat_message,
    call_item,
    chat_params,
    conversation,
    message_item,
    new_id,
    output_items,
    response_object,
)
from corral.tasks.chat.schemas_responses import ResponsesRequest

api = APIRouter(prefix="/v1", tags=["openai"], responses=ERROR_RESPONSES)

_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A response object, or its events as server-sent events with stream",
        "content": {"application/json": {}, "text/event-stream": {}},
    }
}


def _store(request: Request) -> ResponseStore:
    store: ResponseStore = request.app.state.responses
    return store


@api.post("/responses", response_model=None, responses=_ANSWERS)
async def create_response(body: ResponsesRequest, router: RouterDep, request: Request) -> Response:
    store = _store(request)
    trace = current_trace()
    trace.user, trace.metadata = body.user, body.metadata
    messages = conversation(body, store)
    params = chat_params(body, messages)
    headers = body.ignored_header()
    if body.stream:
        answered, chunks = await chat_chunks(router, body.model, params)
        events = _events(body, answered.name, chunks, store, messages)
        return StreamingResponse(
            events, media_type="text/event-stream", headers={"cache-control": "no-cache", **headers}
        )
    answered, reply = await chat_once(router, body.model, params)
    output = output_items(reply["choices"][0]["message"], body.parallel_tool_calls is False)
    final = response_object(body, new_id("resp"), answered.name, output, reply.get("usage"))
    store.put(final, [*messages, as_chat_message(output)])
    return JSONResponse(final, headers=headers)


@api.get("/responses/{response_id}")
async def get_response(response_id: str, request: Request, router: RouterDep) -> dict[str, Any]:
    """A response made here and still kept (the last 1000)."""
    return _store(request).get(response_id)[0]


@api.delete("/responses/{response_id}")
async def delete_response(response_id: str, request: Request, router: RouterDep) -> dict[str, Any]:
    _store(request).delete(response_id)
    return {"id": response_id, "object": "response", "deleted": True}


class _Calls:
    """Tool-call deltas put together, by their index."""

    def __init__(self) -> None:
        self.calls: dict[int, dict[str, Any]] = {}

    def add(self, delta: dict[str, Any]) -> None:
        slot = self.calls.setdefault(
            delta.get("index", 0), {"id": None, "function": {"name": "", "arguments": ""}}
        )
        slot["id"] = delta.get("id") or slot["id"]
        function = delta.get("function") or {}
        slot["function"]["name"] += function.get("name") or ""
        slot["function"]["arguments"] += function.get("arguments") or ""

    def ordered(self, one: bool) -> list[dict[str, Any]]:
        calls = [self.calls[i] for i in sorted(self.calls)]
        return calls[:1] if one else calls


async def _events(
    body: ResponsesRequest,
    model: str,
    chunks: AsyncIterator[dict[str, Any]],
    store: ResponseStore,
    messages: list[dict[str, Any]],
) -> AsyncIterator[str]:
    """Chat chunks as Responses events: created, text deltas live, function calls once
    whole, then completed (the response kept for previous_response_id)."""
    numbers = itertools.count()
    response_id = new_id("resp")

    def event(kind: str, **data: Any) -> str:
        payload = {"type": kind, "sequence_number": next(numbers), **data}
        return f"event: {kind}\ndata: {json.dumps(payload)}\n\n"

    shell = response_object(body, response_id, model, [], None, status="in_progress")
    yield event("response.created", response=shell)
    yield event("response.in_progress", response=shell)
    text_id, text, calls, usage = None, "", _Calls(), None
    try:
        async for chunk in chunks:
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                for call in delta.get("tool_calls") or []:
                    calls.add(call)
                if not delta.get("content"):
                    continue
                if text_id is None:
                    text_id = new_id("msg")
                    for line in _text_opened(event, text_id):
                        yield line
                text += delta["content"]
                yield event(
                    "response.output_text.delta",
                    item_id=text_id,
                    output_index=0,
                    content_index=0,
                    delta=delta["content"],
                    logprobs=[],
                )
    except CorralError as exc:  # after the headers went out: in-band, as OpenAI does
        yield event("error", code=exc.code, message=exc.message, param=exc.param)
        return
    output: list[dict[str, Any]] = []
    whole = calls.ordered(one=body.parallel_tool_calls is False)
    if text_id is None and not whole:  # an empty answer is still one message
        text_id = new_id("msg")
        for line in _text_opened(event, text_id):
            yield line
    if text_id is not None:
        item = message_item(text_id, text)
        for line in _text_closed(event, item):
            yield line
        output.append(item)
    for call in whole:
        item = call_item(new_id("fc"), call)
        for line in _call_events(event, item, len(output)):
            yield line
        output.append(item)
    final = response_object(body, response_id, model, output, usage)
    store.put(final, [*messages, as_chat_message(output)])
    yield event("response.completed", response=final)


def _text_opened(event: Any, item_id: str) -> list[str]:
    return [
        event(
            "response.output_item.added",
            output_index=0,
            item=message_item(item_id, "", status="in_progress"),
        ),
        event(
            "response.content_part.added",
            item_id=item_id,
            output_index=0,
            content_index=0,
            part={"type": "output_text", "text": "", "annotations": [], "logprobs": []},
        ),
    ]


def _text_closed(event: Any, item: dict[str, Any]) -> list[str]:
    part = item["content"][0]
    where = {"item_id": item["id"], "output_index": 0, "content_index": 0}
    return [
        event("response.output_text.done", **where, text=part["text"], logprobs=[]),
        event("response.content_part.done", **where, part=part),
        event("response.output_item.done", output_index=0, item=item),
    ]


def _call_events(event: Any, item: dict[str, Any], index: int) -> list[str]:
    where = {"item_id": item["id"], "output_index": index}
    return [
        event(
            "response.output_item.added",
            output_index=index,
            item={**item, "arguments": "", "status": "in_progress"},
        ),
        event("response.function_call_arguments.delta", **where, delta=item["arguments"]),
        event(
            "response.function_call_arguments.done",
            **where,
            arguments=item["arguments"],
            name=item["name"],
        ),
        event("response.output_item.done", output_index=index, item=item),
    ]
