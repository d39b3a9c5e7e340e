"""What every request and response body shares: unknown fields refused, the ignored-fields
header, usage, model cards and the error shape (each family keeps its own bodies).

Requests forbid unknown fields (a misspelt ``top_n`` should fail loudly, as OpenAI's API
does). Responses are plain models so ``/openapi.json`` documents them.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

IGNORED_HEADER = "x-corral-ignored"  # the valid fields a request sent that corral ignored


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # finite numbers only
    # fields the API this shape comes from documents but corral does not apply: accepted
    # (a client sending them is right) and named in the x-corral-ignored response header
    IGNORED: ClassVar[frozenset[str]] = frozenset()

    model: str | None = Field(None, description="Expert name or alias; omitted: the task default.")

    def ignored_header(self) -> dict[str, str]:
        """``{"x-corral-ignored": "store,service_tier"}`` for the ignored fields sent."""
        sent = sorted(
            name for name in self.IGNORED & self.model_fields_set if getattr(self, name) is not None
        )
        return {IGNORED_HEADER: ",".join(sent)} if sent else {}


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


# --- models (OpenAI, extended) --------------------------------------------------------
class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "corral"
    model: str = Field(description="The model id from the config (hub id, package, tag).")
    task: str | None
    backend: str | None
    runtime: str | None = Field(
        None, description="The engine and precision serving a loaded expert (onnxruntime-int8)."
    )
    state: str
    default: bool
    aliases: list[str]
    memory_bytes: int | None = None
    reason: str | None = Field(None, description="Why the expert is unavailable, if it is.")
    stages: list[str] | None = Field(None, description="A cascade's experts, smallest first.")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# --- errors ---------------------------------------------------------------------------
class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str
    trace_id: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


_ERRORS = {
    400: "The body is not valid JSON.",
    401: "An API key is configured and this request has none, or a wrong one.",
    403: "The API key may not use that expert.",
    404: "No such expert, trace or resource.",
    413: "An input limit was exceeded (server.limits); the message names it.",
    422: "A field is invalid; the message names it.",
    429: "The key's rate limit is spent; see Retry-After.",
    500: "The expert failed on this request; the server log has the details.",
    503: "The expert cannot answer now (not loaded, no memory, upstream down); see Retry-After.",
    504: "The expert took longer than its timeout_s.",
}
# every /v1 operation documents corral's error shape for each status it can answer with
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text} for status, text in _ERRORS.items()
}
