"""``POST /v1/completions``: OpenAI's legacy prompt completion (LlamaIndex's
``OpenAILike`` with its default ``is_chat_model=False`` calls it).

The prompt goes to the chat expert as one user message, through the same router,
fallbacks and breakers as ``/v1/chat/completions``; the answer comes back in the legacy
``text_completion`` shape, streamed as server-sent events on request."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import Field, StrictBool

from corral.errors import CorralError, InvalidRequest
from corral.input_limits import check_texts
from corral.observe import current_trace
from corral.server.deps import RouterDep
from corral.server.schemas import ERROR_RESPONSES, _Request
from corral.tasks.chat.api import chat_chunks, chat_once
from corral.tasks.chat.schemas import LogitBias, StreamOptions
from corral.tasks.chat.token_ids import input_texts

api = APIRouter(prefix="/v1", tags=["openai"], responses=ERROR_RESPONSES)

_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A text_completion, or its chunks as server-sent events with stream",
        "content": {"application/json": {}, "text/event-stream": {}},
    }
}


class CompletionRequest(_Request):
    IGNORED: ClassVar[frozenset[str]] = frozenset({"suffix", "best_of", "logprobs"})

    prompt: str | list[str] | list[int] | list[list[int]] = Field(
        description="A prompt, prompts (one choice each), or tiktoken token ids."
    )
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: LogitBias | None = None
    echo: StrictBool = Field(False, description="Put the prompt before each completion's text.")
    n: int = Field(1, ge=1, le=1, description="Only one choice per prompt is served.")
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, max_length=256)
    suffix: str | None = None
    best_of: int | None = None
    logprobs: int | None = None

    def chat_params(self, prompt: str) -> dict[str, Any]:
        params = self.model_dump(
            exclude_none=True,
            include={
                "max_tokens",
                "temperature",
                "top_p",
                "stop",
                "seed",
                "presence_penalty",
                "frequency_penalty",
                "logit_bias",
            },
        )
        return {**params, "messages": [{"role": "user", "content": prompt}]}


@api.post("/completions", response_model=None, responses=_ANSWERS)
async def completions(body: CompletionRequest, router: RouterDep) -> Response:
    prompts = input_texts(body.prompt, body.model)
    if not prompts:
        raise InvalidRequest("prompt must not be empty", param="prompt")
    check_texts(prompts, router.runtime.config.server.limits, param="prompt")
    current_trace().user = body.user
    headers = body.ignored_header()
    base = {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()),
    }
    if body.stream:
        if len(prompts) != 1:
            raise InvalidRequest("stream one prompt at a time", param="prompt")
        answered, chunks = await chat_chunks(router, body.model, body.chat_params(prompts[0]))
        base["model"] = answered.name
        return StreamingResponse(
            _sse(chunks, base, body, prompts[0]),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", **headers},
        )
    choices, usage, model = [], {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}, ""
    for index, prompt in enumerate(prompts):
        answered, reply = await chat_once(router, body.model, body.chat_params(prompt))
        model = answered.name
        choice = reply["choices"][0]
        text = str(choice["message"].get("content") or "")
        choices.append(
            {
                "text": prompt + text if body.echo else text,
                "index": index,
                "logprobs": None,
                "finish_reason": choice.get("finish_reason") or "stop",
            }
        )
        for key in usage:
            usage[key] += int((reply.get("usage") or {}).get(key) or 0)
    return JSONResponse(
        {**base, "model": model, "choices": choices, "usage": usage}, headers=headers
    )


async def _sse(
    chunks: AsyncIterator[dict[str, Any]],
    base: dict[str, Any],
    body: CompletionRequest,
    prompt: str,
) -> AsyncIterator[str]:
    """Chat chunks as text_completion chunks: text deltas, the finish, usage if asked."""

    def event(text: str, finish: str | None) -> str:
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
        return f"data: {json.dumps({**base, 'choices': [choice]})}\n\n"

    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    if body.echo:
        yield event(prompt, None)
    try:
        async for chunk in chunks:
            for choice in chunk.get("choices") or []:
                text = (choice.get("delta") or {}).get("content") or ""
                if text or choice.get("finish_reason"):
                    yield event(text, choice.get("finish_reason"))
            if chunk.get("usage") and include_usage:
                yield f"data: {json.dumps({**base, 'choices': [], 'usage': chunk['usage']})}\n\n"
    except CorralError as exc:  # after the headers went out: in-band, as OpenAI does
        yield f"data: {json.dumps({'error': {'message': exc.message, 'code': exc.code}})}\n\n"
    yield "data: [DONE]\n\n"
