"""Request and response bodies in other ecosystems' shapes: Cohere's embed (v1 and v2)
and Hugging Face TEI's embed and rerank. Rerank bodies are shared (``RerankRequest``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, StrictBool, model_validator

from corral.server.schemas import _Request

EmbeddingType = Literal["float", "int8", "uint8", "binary", "ubinary", "base64"]


class CohereEmbedRequest(_Request):
    """Cohere's ``POST /v1/embed`` and ``/v2/embed``."""

    IGNORED = frozenset({"priority"})

    texts: list[str] | None = Field(None, min_length=1)
    inputs: list[dict[str, Any]] | None = Field(
        None, min_length=1, description="v2's content lists; only text parts are embedded."
    )
    images: list[str] | None = None
    input_type: (
        Literal["search_document", "search_query", "classification", "clustering", "image"] | None
    ) = Field(None, description="Chooses the expert's prompt (its `prompts:`), if it has one.")
    embedding_types: list[EmbeddingType] | None = Field(None, min_length=1)
    output_dimension: int | None = Field(None, ge=1)
    max_tokens: int | None = Field(None, ge=1, description="Cut each text to this many tokens.")
    truncate: Literal["NONE", "START", "END"] = "END"
    priority: int | None = None

    @model_validator(mode="after")
    def _text_only(self) -> CohereEmbedRequest:
        if self.images or self.input_type == "image":
            raise ValueError("corral's embedders read text: send `texts` (images are not embedded)")
        if self.texts is None and self.inputs is None:
            raise ValueError("give the texts to embed as 'texts' (or v2's 'inputs')")
        _ = self.text_list  # each v2 input must be text: say so here (422), not later
        return self

    @property
    def text_list(self) -> list[str]:
        if self.texts is not None:
            return self.texts
        return [_input_text(i, item) for i, item in enumerate(self.inputs or [])]


def _input_text(index: int, item: dict[str, Any]) -> str:
    """One v2 input (``{"content": [{"type": "text", "text": ...}]}``) as one text."""
    parts = item.get("content") or []
    if not isinstance(parts, list) or any(
        not isinstance(p, dict) or p.get("type") != "text" for p in parts
    ):
        raise ValueError(f"inputs[{index}]: only text content parts can be embedded")
    return " ".join(str(p.get("text", "")) for p in parts)


class CohereEmbedResponse(BaseModel):
    id: str
    response_type: Literal["embeddings_floats", "embeddings_by_type"]
    embeddings: list[list[float]] | dict[str, list[Any]]
    texts: list[str]
    meta: dict[str, Any]


class TeiEmbedRequest(_Request):
    """TEI's ``POST /embed`` (and ``/embed_all``'s fields): answered with bare vectors."""

    inputs: str | list[str] = Field(description="A text or a non-empty list of texts.")
    normalize: StrictBool = Field(True, description="Unit-length vectors (TEI's default).")
    truncate: StrictBool = Field(True, description="false: a too-long text is a 422 (not cut).")
    truncation_direction: Literal["Right", "Left", "right", "left"] = "Right"
    prompt_name: str | None = None
    dimensions: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _not_empty(self) -> TeiEmbedRequest:
        if not self.inputs:
            raise ValueError("inputs must not be empty")
        return self

    @property
    def texts(self) -> list[str]:
        return [self.inputs] if isinstance(self.inputs, str) else self.inputs


class TeiRank(BaseModel):
    index: int
    score: float
    text: str | None = None
