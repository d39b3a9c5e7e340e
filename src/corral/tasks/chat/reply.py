"""OpenAI ``chat.completion`` objects and chunks from llama.cpp text completions.

corral renders the prompt itself (``chat_template.py``) and asks llama.cpp for a plain text
completion, so the chat shape (message, tool calls, finish reason, logprobs, usage) is
written here, once for whole replies and once for streams.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

__all__ = ["chat_chunk", "chat_logprobs", "chat_reply", "usage"]


def chat_reply(
    model: str,
    content: str | None,
    calls: list[dict[str, Any]],
    finish_reason: str | None,
    usage_: dict[str, int],
    logprobs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": logprobs,
                "finish_reason": "tool_calls" if calls else finish_reason,
            }
        ],
        "usage": usage_,
    }


def chat_chunk(
    chunk_id: str,
    model: str,
    delta: dict[str, Any],
    finish_reason: str | None = None,
    logprobs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "id": chunk_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
        ],
    }


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chat_logprobs(text_logprobs: dict[str, Any] | None) -> dict[str, Any] | None:
    """A text completion's logprobs (parallel lists, numpy floats) in the chat shape."""
    if not text_logprobs:
        return None
    tokens = text_logprobs.get("tokens") or []
    values = text_logprobs.get("token_logprobs") or []
    tops = text_logprobs.get("top_logprobs") or [None] * len(tokens)
    return {
        "content": [
            {
                "token": token,
                "bytes": None,
                "logprob": float(logprob),
                "top_logprobs": [
                    {"token": t, "logprob": float(lp), "bytes": None}
                    for t, lp in (top or {}).items()
                ],
            }
            for token, logprob, top in zip(tokens, values, tops, strict=False)
            if logprob is not None
        ],
        "refusal": None,
    }
