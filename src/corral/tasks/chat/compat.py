"""OpenAI chat parameters corral applies around the expert's answer: ``user`` and
``metadata`` into the trace, ``parallel_tool_calls: false`` (one tool call at most), and
the legacy ``functions`` answer shape (``function_call`` instead of ``tool_calls``)."""

from __future__ import annotations

from typing import Any

from corral.observe import current_trace
from corral.tasks.chat.schemas import ChatCompletionRequest


def note_request(body: ChatCompletionRequest) -> None:
    """Keep the caller's ``user`` and ``metadata`` with the request's trace."""
    trace = current_trace()
    trace.user = body.user
    trace.metadata = body.metadata


def shape_reply(body: ChatCompletionRequest, reply: dict[str, Any]) -> dict[str, Any]:
    """A whole completion, as the request's parameters ask for it."""
    for choice in reply.get("choices") or []:
        message = choice.get("message") or {}
        calls = message.get("tool_calls")
        if not calls:
            continue
        if body.parallel_tool_calls is False or body.legacy_functions:
            message["tool_calls"] = calls = calls[:1]
        if body.legacy_functions:
            message["function_call"] = calls[0]["function"]
            del message["tool_calls"]
            choice["finish_reason"] = "function_call"
    return reply


def shape_chunk(body: ChatCompletionRequest, chunk: dict[str, Any]) -> dict[str, Any]:
    """One streamed chunk, likewise (tool calls after the first are dropped)."""
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        calls = delta.get("tool_calls")
        if calls and (body.parallel_tool_calls is False or body.legacy_functions):
            delta["tool_calls"] = calls = [c for c in calls if c.get("index", 0) == 0]
            if not calls:
                del delta["tool_calls"]
        if body.legacy_functions:
            if calls:
                delta["function_call"] = calls[0].get("function", {})
                delta.pop("tool_calls", None)
            if choice.get("finish_reason") == "tool_calls":
                choice["finish_reason"] = "function_call"
    return chunk
