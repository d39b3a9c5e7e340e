"""``POST /v1/responses`` request body, OpenAI's Responses API shape (text and function
tools; the hosted tools are OpenAI's own and are refused by name)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from corral.server.schemas import _Request
from corral.tasks.chat.schemas import JsonSchema, Metadata


class FunctionTool(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["function"] = "function"
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: JsonSchema = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: StrictBool | None = None


class NamedFunction(BaseModel):
    type: Literal["function"] = "function"
    name: str


class TextFormat(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = None
    schema_: JsonSchema | None = Field(None, alias="schema")
    strict: StrictBool | None = None


class TextConfig(BaseModel):
    model_config = ConfigDict(extra="allow")  # verbosity: accepted, no effect

    format: TextFormat | None = None


RESPONSES_IGNORED = frozenset(
    {
        "background",
        "context_management",
        "conversation",
        "include",
        "max_tool_calls",
        "moderation",
        "prompt",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
        "reasoning",
        "safety_identifier",
        "service_tier",
        "store",
        "stream_options",
        "top_logprobs",
        "truncation",
    }
)


class ResponsesRequest(_Request):
    IGNORED: ClassVar[frozenset[str]] = RESPONSES_IGNORED

    input: str | list[dict[str, Any]] = Field(
        description="Text, or items: messages, function_call and function_call_output."
    )
    instructions: str | None = Field(None, description="A system message for this turn only.")
    previous_response_id: str | None = Field(
        None, description="Continue that response's conversation (kept in memory, bounded)."
    )
    tools: list[dict[str, Any]] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedFunction | None = None
    parallel_tool_calls: StrictBool | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_output_tokens: int | None = Field(None, ge=1)
    text: TextConfig | None = None
    stream: StrictBool = False
    metadata: Metadata = None
    user: str | None = Field(None, max_length=256)
    # accepted and ignored (RESPONSES_IGNORED)
    background: StrictBool | None = None
    context_management: Any = None
    conversation: Any = None
    include: list[str] | None = None
    max_tool_calls: int | None = None
    moderation: Any = None
    prompt: Any = None
    prompt_cache_key: str | None = None
    prompt_cache_options: Any = None
    prompt_cache_retention: str | None = None
    reasoning: dict[str, Any] | None = None
    safety_identifier: str | None = None
    service_tier: str | None = None
    store: StrictBool | None = None
    stream_options: dict[str, Any] | None = None
    top_logprobs: int | None = None
    truncation: str | None = None

    @model_validator(mode="after")
    def _function_tools_only(self) -> ResponsesRequest:
        for i, tool in enumerate(self.tools or []):
            if tool.get("type") != "function":
                raise ValueError(
                    f"tools[{i}]: type {tool.get('type')!r} is one of OpenAI's hosted tools; "
                    "corral runs function tools only (type: function)"
                )
            FunctionTool.model_validate(tool)  # its problems are this request's 422
        return self

    @property
    def function_tools(self) -> list[FunctionTool]:
        return [FunctionTool.model_validate(t) for t in self.tools or []]
