"""In-process GGUF chat through llama-cpp-python.

One ``Llama`` context serves one request at a time, so every call runs on this expert's
own worker thread (the runtime gives each llama.cpp expert one). Streaming hands chunks
from that thread to the event loop through a queue; a client that disconnects stops
the generation at the next token.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

from corral.errors import ExpertUnavailable, InvalidRequest
from corral.experts._memory import llama_bytes
from corral.experts.base import require
from corral.experts.chat import COMPUTE_SECONDS, ChatExpert

__all__ = ["LlamaCppChat"]

_DONE = object()


def find_gguf(path: Path) -> Path:
    """The GGUF file itself, or the only/first one in a directory."""
    if path.is_file():
        return path
    files = sorted(path.glob("*.gguf"))
    if not files:
        raise ExpertUnavailable(f"no .gguf file in {path}; set `path:` to the GGUF file")
    return files[0]


class LlamaCppChat(ChatExpert):
    """Chat with a local GGUF model (llama.cpp)."""

    backend: ClassVar[str] = "llama-cpp"
    uses_torch: ClassVar[bool] = False

    def load(self) -> None:
        llama_cpp = require("llama_cpp", "llm")
        options = self.context.options
        model_file = find_gguf(self.context.path)
        on_gpu = self.context.device.startswith("cuda")
        self.llm = llama_cpp.Llama(
            model_path=str(model_file),
            n_ctx=int(options.get("n_ctx", 2048)),
            n_threads=int(options.get("n_threads", os.cpu_count() or 2)),
            n_gpu_layers=int(options.get("n_gpu_layers", -1 if on_gpu else 0)),
            chat_format=options.get("chat_format", "chatml-function-calling"),
            seed=int(options.get("seed", 0xC0221)),
            # logprobs need every position's logits kept: about 4x slower generation here
            logits_all=bool(options.get("logprobs", False)),
            verbose=False,
        )
        self._budget = 512
        self._cap_completions()

    def _cap_completions(self) -> None:
        """llama-cpp-python's ``chatml-function-calling`` handler ignores the request's
        max_tokens in "auto" tool mode: it writes tool arguments and messages with
        ``max_tokens=None``, i.e. until the context is full. Under a JSON grammar a small
        model then spent 115 s on one runaway string argument (or failed with "Requested
        tokens exceed context window"). Every completion this instance makes is capped at
        the current request's budget instead."""
        create_completion = self.llm.create_completion

        def capped(*args: Any, max_tokens: int | None = None, **kwargs: Any) -> Any:
            return create_completion(*args, max_tokens=max_tokens or self._budget, **kwargs)

        self.llm.create_completion = capped  # type: ignore[method-assign]

    def unload(self) -> None:
        self.llm.close()
        del self.llm

    def resident_bytes(self) -> int | None:
        return llama_bytes(self.llm)

    async def complete(self, params: dict[str, Any]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        kwargs = self._kwargs(params)

        def timed() -> dict[str, Any]:
            started = time.perf_counter()
            result: dict[str, Any] = self._call(kwargs)
            return {**result, COMPUTE_SECONDS: time.perf_counter() - started}

        return await loop.run_in_executor(self.context.executor, timed)

    async def stream(self, params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()
        kwargs = self._kwargs(params) | {"stream": True}

        busy = 0.0

        def produce() -> None:
            nonlocal busy
            started = time.perf_counter()
            try:
                for chunk in self._call(kwargs):  # a stream fails here, not in _call
                    loop.call_soon_threadsafe(queue.put_nowait, chunk)
                    if stop.is_set():
                        break
            except ValueError as exc:
                loop.call_soon_threadsafe(queue.put_nowait, _as_request_error(exc))
            except BaseException as exc:  # handed to the consumer, raised there
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                busy = time.perf_counter() - started
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)

        producer = loop.run_in_executor(self.context.executor, produce)
        completion_tokens = 0
        last: dict[str, Any] | None = None
        try:
            while (item := await queue.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                completion_tokens += any(
                    c["delta"].get("content") or c["delta"].get("tool_calls")
                    for c in item["choices"]
                )
                last = item
                yield item
        finally:
            stop.set()
            await asyncio.shield(producer)
        if last is not None:
            total = int(self.llm.n_tokens)
            prompt = max(0, total - completion_tokens)
            yield {
                **last,
                "choices": [],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt + completion_tokens,
                },
                COMPUTE_SECONDS: busy,
            }

    def _kwargs(self, params: dict[str, Any]) -> dict[str, Any]:
        kwargs = _llama_kwargs(params)
        if kwargs.get("logprobs") and not self.context.options.get("logprobs", False):
            raise InvalidRequest(
                "this llama.cpp expert returns no logprobs: set `options: {logprobs: true}` "
                "on it (keeps every position's logits; generation about 4x slower)",
                param="logprobs",
            )
        # OpenAI's default is "until done"; a small local model may ramble to the end of its
        # context, so the config sets a cap (options.max_tokens) for requests that give none.
        kwargs.setdefault("max_tokens", int(self.context.options.get("max_tokens", 512)))
        vocabulary = self.llm.n_vocab()
        if any(int(token) >= vocabulary for token in kwargs.get("logit_bias") or {}):
            raise InvalidRequest(
                f"logit_bias: token ids are this model's own, below {vocabulary}",
                param="logit_bias",
            )
        if kwargs.get("tool_choice") == "required":
            kwargs["tool_choice"] = _one_tool_required(kwargs.get("tools") or [])
        return kwargs

    def _call(self, kwargs: dict[str, Any]) -> Any:
        self._budget = kwargs["max_tokens"]  # one request at a time runs on this thread
        try:
            result = self.llm.create_chat_completion(**kwargs)
            if kwargs.get("logprobs") and not kwargs.get("stream"):
                return _plain_numbers(result)  # llama.cpp puts numpy floats in logprobs
            if kwargs.get("logprobs"):
                return (_plain_numbers(chunk) for chunk in result)
            return result
        except ValueError as exc:
            raise _as_request_error(exc) from exc


def _as_request_error(exc: ValueError) -> Exception:
    """llama.cpp says "Requested tokens (N) exceed context window of M" for a prompt too
    long for the context: the caller's to shorten (422), not a server failure."""
    if "context window" in str(exc) or "exceed" in str(exc):
        return InvalidRequest(
            f"{exc}; shorten the messages or raise the expert's options.n_ctx", param="messages"
        )
    return exc


def _plain_numbers(value: Any) -> Any:
    """Numpy scalars as Python numbers, so the result serialises as JSON."""
    if isinstance(value, dict):
        return {k: _plain_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_numbers(v) for v in value]
    return value.item() if hasattr(value, "item") and hasattr(value, "dtype") else value


def _llama_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """OpenAI request fields -> ``Llama.create_chat_completion`` keyword arguments."""
    kwargs = {k: v for k, v in params.items() if v is not None and k in _PASSED}
    # llama.cpp's chat templates read ``content`` on every message; OpenAI allows it absent
    # (or null) on an assistant message that only calls tools.
    kwargs["messages"] = [{**m, "content": m.get("content") or ""} for m in params["messages"]]
    response_format = params.get("response_format")
    if response_format and response_format.get("type") == "json_schema":
        schema = response_format.get("json_schema", {}).get("schema", {})
        kwargs["response_format"] = {"type": "json_object", "schema": schema}
    if params.get("max_completion_tokens") and not params.get("max_tokens"):
        kwargs["max_tokens"] = params["max_completion_tokens"]
    return kwargs


_PASSED = frozenset(
    {
        "messages",
        "temperature",
        "top_p",
        "max_tokens",
        "stop",
        "seed",
        "tools",
        "tool_choice",
        "response_format",
        "presence_penalty",
        "frequency_penalty",
        "logprobs",
        "top_logprobs",
        "logit_bias",  # token ids of the model's own vocabulary
    }
)


def _one_tool_required(tools: list[dict[str, Any]]) -> dict[str, Any]:
    """llama.cpp's function calling forces a named tool but has no "required" (any tool):
    with one tool that is the same thing; with several the caller must name one."""
    if len(tools) != 1:
        raise InvalidRequest(
            f'tool_choice "required" with {len(tools)} tools is not supported by llama.cpp '
            'experts: name the tool ({"type": "function", "function": {"name": ...}})',
            param="tool_choice",
        )
    return {"type": "function", "function": {"name": tools[0]["function"]["name"]}}
