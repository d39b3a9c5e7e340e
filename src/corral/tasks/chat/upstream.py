"""Chat served by an OpenAI-compatible upstream (vLLM, llama.cpp server, a hosted API,
Ollama's ``/v1``), through the official ``openai`` client.

Upstream errors keep their status and message; an upstream that cannot be reached is a
503 naming the expert and the address.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any, ClassVar, NoReturn

from corral.errors import CorralError, ExpertUnavailable, RequestError
from corral.experts.base import require
from corral.experts.options import UpstreamOptions
from corral.tasks.chat.expert import ChatExpert

__all__ = ["OllamaChat", "OpenAIUpstreamChat"]


class OpenAIUpstreamChat(ChatExpert):
    """Chat with a model behind an OpenAI-compatible API."""

    options_model = UpstreamOptions
    backend: ClassVar[str] = "openai"
    uses_torch: ClassVar[bool] = False

    def load(self) -> None:
        openai = require("openai", "llm")
        options = self.context.options
        key_env = str(options.get("api_key_env", "OPENAI_API_KEY"))
        self.base_url = self.api_base(self.context.base_url or "")
        self.upstream_model = str(options.get("upstream_model", self.default_upstream_model()))
        self.client = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=os.environ.get(key_env) or "unused",
            timeout=float(options.get("timeout_s", self.context.spec.timeout_s or 600)),
            max_retries=0,
        )
        self._openai = openai

    def unload(self) -> None:
        del self.client

    async def aclose(self) -> None:
        await self.client.close()
        self.unload()

    def api_base(self, base_url: str) -> str:
        return base_url.rstrip("/")

    def default_upstream_model(self) -> str:
        return self.context.spec.model

    async def complete(self, params: dict[str, Any]) -> dict[str, Any]:
        try:
            reply = await self.client.chat.completions.create(**self._request(params))
        except self._openai.OpenAIError as exc:
            self._raise(exc)
        return reply.model_dump(exclude_none=True)  # type: ignore[no-any-return]

    async def stream(self, params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        try:
            chunks = await self.client.chat.completions.create(**self._request(params), stream=True)
            async for chunk in chunks:
                yield chunk.model_dump(exclude_none=True)
        except self._openai.OpenAIError as exc:
            self._raise(exc)

    def _request(self, params: dict[str, Any]) -> dict[str, Any]:
        body = {k: v for k, v in params.items() if v is not None and k not in ("model", "stream")}
        return {"model": self.upstream_model, **body}

    def _raise(self, exc: Exception) -> NoReturn:
        name = self.context.spec.name
        if isinstance(exc, self._openai.APIConnectionError):
            raise ExpertUnavailable(
                f"expert {name!r}: upstream {self.base_url} is unreachable ({exc}); is it running?"
            ) from exc
        if isinstance(exc, self._openai.APIStatusError):
            message = f"upstream {self.base_url} for expert {name!r}: {_upstream_message(exc)}"
            error: CorralError = (
                RequestError(message) if exc.status_code < 500 else ExpertUnavailable(message)
            )
            error.status_code = exc.status_code if exc.status_code < 500 else 502
            raise error from exc
        raise ExpertUnavailable(f"expert {name!r}: upstream error: {exc}") from exc


class OllamaChat(OpenAIUpstreamChat):
    """Chat with a model served by Ollama (its OpenAI-compatible ``/v1`` API)."""

    backend: ClassVar[str] = "ollama"

    def api_base(self, base_url: str) -> str:
        base = base_url.rstrip("/")
        return base if base.endswith("/v1") else base + "/v1"


def _upstream_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    return str(exc.message)
