"""``POST /v1/chat/completions`` request body, OpenAI's shape.

Validated before any model runs: roles, a non-empty conversation, tool and response
JSON schemas (checked as JSON Schema documents), ``n`` (only 1 is served).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, model_validator

from corral.server.schemas import _Request
from corral.tasks.chat.grammar_safety import UnsafeSchema, check_schema


def _check_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"not a valid JSON Schema: {exc.message}") from None
    try:
        check_schema(schema)  # what a grammar can safely express (LLM experts need it)
    except UnsafeSchema as exc:
        raise ValueError(f"not a schema a grammar can safely express: {exc}") from None
    return schema


JsonSchema = Annotated[dict[str, Any], AfterValidator(_check_json_schema)]


class ChatMessage(BaseModel):
    # name, tool_calls, tool_call_id, refusal... pass through to the backend unchanged
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None

    def for_backend(self) -> dict[str, Any]:
        """OpenAI's message; a legacy ``function`` result becomes a ``tool`` message, and a
        legacy ``function_call`` an assistant tool call (ids named after the function)."""
        message = self.model_dump(exclude_none=True)
        if self.role == "function":
            name = message.pop("name", "function")
            return {**message, "role": "tool", "tool_call_id": f"call_{name}", "name": name}
        call = message.pop("function_call", None)
        if self.role == "assistant" and isinstance(call, dict) and "tool_calls" not in message:
            name = call.get("name", "function")
            message["tool_calls"] = [{"id": f"call_{name}", "type": "function", "function": call}]
        return message


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: JsonSchema = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: StrictBool | None = None


class Tool(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["function"] = "function"
    function: FunctionDefinition


class NamedToolChoice(BaseModel):
    type: Literal["function"] = "function"
    function: dict[Literal["name"], str]


class JsonSchemaFormat(BaseModel):
    name: str = "response"
    schema_: JsonSchema = Field(alias="schema")
    strict: StrictBool | None = None
    description: str | None = None


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type 'json_schema' needs a 'json_schema' object with a 'schema'")
        return self


class StreamOptions(BaseModel):
    include_usage: StrictBool = False


def _metadata_limits(value: dict[str, str] | None) -> dict[str, str] | None:
    """OpenAI's bounds: 16 pairs, keys up to 64 characters, values up to 512."""
    if value is not None and (
        len(value) > 16 or any(len(k) > 64 or len(v) > 512 for k, v in value.items())
    ):
        raise ValueError("metadata: at most 16 pairs, keys <= 64 and values <= 512 characters")
    return value


Metadata = Annotated[dict[str, str] | None, AfterValidator(_metadata_limits)]
# token id (a decimal string, of the expert's own vocabulary) -> bias in [-100, 100]
LogitBias = dict[
    Annotated[str, Field(pattern=r"^[0-9]{1,9}$")], Annotated[float, Field(ge=-100, le=100)]
]
# OpenAI fields with no meaning for local experts: accepted, named in x-corral-ignored
CHAT_IGNORED = frozenset(
    {
        "store",
        "service_tier",
        "reasoning_effort",
        "modalities",
        "audio",
        "prediction",
        "prompt_cache_key",
        "prompt_cache_retention",
        "safety_identifier",
        "verbosity",
        "web_search_options",
        "moderation",
        "prompt_cache_options",
    }
)


class ChatCompletionRequest(_Request):
    IGNORED: ClassVar[frozenset[str]] = CHAT_IGNORED

    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: StrictBool | None = None
    response_format: ResponseFormat | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logprobs: StrictBool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    n: int = Field(1, ge=1, le=1, description="Only one choice per request is served.")
    user: str | None = Field(
        None, max_length=256, description="Your end user's id: in the trace and usage by user."
    )
    metadata: Metadata = Field(None, description="Up to 16 strings: kept in the trace.")
    logit_bias: LogitBias | None = Field(
        None, description="Token id (the expert's own tokenizer) -> bias in [-100, 100]."
    )
    functions: list[FunctionDefinition] | None = Field(
        None, description="Legacy form of `tools`; the answer then has `function_call`."
    )
    function_call: Literal["none", "auto"] | dict[Literal["name"], str] | None = None
    # accepted and ignored (see CHAT_IGNORED)
    store: StrictBool | None = None
    service_tier: str | None = None
    reasoning_effort: str | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    safety_identifier: str | None = None
    verbosity: str | None = None
    web_search_options: dict[str, Any] | None = None
    moderation: Any = None
    prompt_cache_options: Any = None

    @model_validator(mode="after")
    def _tool_choice_names_a_tool(self) -> ChatCompletionRequest:
        if self.functions is not None and self.tools is not None:
            raise ValueError("give either 'tools' or the legacy 'functions', not both")
        if isinstance(self.tool_choice, NamedToolChoice):
            names = {t.function.name for t in self.tools or []}
            if self.tool_choice.function.get("name") not in names:
                raise ValueError("tool_choice names a function that is not in 'tools'")
        if isinstance(self.function_call, dict):
            names = {f.name for f in self.functions or []}
            if self.function_call.get("name") not in names:
                raise ValueError("function_call names a function that is not in 'functions'")
        return self

    @property
    def legacy_functions(self) -> bool:
        return self.functions is not None

    def backend_params(self) -> dict[str, Any]:
        """The generation parameters a chat backend receives (OpenAI names); legacy
        functions as tools."""
        params = self.model_dump(
            exclude_none=True,
            by_alias=True,
            exclude={
                "model",
                "stream",
                "stream_options",
                "n",
                "user",
                "metadata",
                "messages",
                "functions",
                "function_call",
                *self.IGNORED,
            },
        )
        params["messages"] = [m.for_backend() for m in self.messages]
        if self.functions is not None:
            params["tools"] = [
                {"type": "function", "function": f.model_dump(exclude_none=True)}
                for f in self.functions
            ]
            if isinstance(self.function_call, dict):
                params["tool_choice"] = {"type": "function", "function": self.function_call}
            elif self.function_call is not None:
                params["tool_choice"] = self.function_call
        return params
