"""Bodies of the text endpoints: OpenAI embeddings, rerank (Cohere/TEI shape), classify, NER."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from corral.server.schemas import Usage, _Request
from corral.tasks.text.hypothesis import check_template, distinct_labels

# one text, or a non-empty list of them
Texts = str | Annotated[list[str], Field(min_length=1)]


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def truncation(truncate: bool | str, direction: str = "Right") -> Literal["end", "start", "none"]:
    """TEI's ``truncate`` + ``truncation_direction`` or Cohere's NONE/START/END, as one."""
    if truncate is False or truncate == "NONE":
        return "none"
    if truncate == "START" or (truncate is True and direction.lower() == "left"):
        return "start"
    return "end"


# --- embeddings (OpenAI) --------------------------------------------------------------
class EmbeddingsRequest(_Request):
    input: str | list[str] | list[int] | list[list[int]] = Field(
        description="Text, texts, or tiktoken token ids (decoded when the encoding is local)."
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = Field(
        None, max_length=256, description="Your end user's id: in the trace and usage by user."
    )
    prompt_name: str | None = Field(None, description="One of the expert's `prompts` (corral).")

    @field_validator("input")
    @classmethod
    def _not_empty(cls, value: object) -> object:
        if isinstance(value, list) and not value:
            raise ValueError("input must not be empty")
        return value


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: Usage


# --- rerank (Cohere / TEI) ------------------------------------------------------------
class RerankDocument(BaseModel):
    model_config = ConfigDict(extra="allow")
    text: str


class RerankRequest(_Request):
    """Cohere's (v1 and v2), TEI's and Infinity's rerank bodies, in one."""

    IGNORED = frozenset({"rank_fields", "max_chunks_per_doc", "priority", "relevant_spans"})

    query: str = Field(min_length=1)
    documents: list[str | RerankDocument] | None = None
    texts: list[str] | None = Field(None, description="TEI's name for documents.")
    top_n: int | None = Field(None, ge=1)
    return_documents: StrictBool = False
    return_text: StrictBool = Field(False, description="TEI's name for return_documents.")
    raw_scores: StrictBool = Field(False, description="Raw model scores instead of [0, 1].")
    max_tokens_per_doc: int | None = Field(None, ge=1, description="Cut each document to this.")
    truncate: StrictBool | Literal["NONE", "START", "END"] = Field(
        True, description="TEI: false refuses a too-long document (422); Cohere: NONE/START/END."
    )
    truncation_direction: Literal["Right", "Left", "right", "left"] = Field(
        "Right", description="TEI: the side a too-long document is cut on."
    )
    rank_fields: list[str] | None = None
    max_chunks_per_doc: int | None = None
    priority: int | None = None
    relevant_spans: Any = None

    @model_validator(mode="after")
    def _has_documents(self) -> RerankRequest:
        if self.documents is None and self.texts is None:
            raise ValueError("give the passages to rank as 'documents' (or TEI's 'texts')")
        return self

    @property
    def document_texts(self) -> list[str]:
        docs = self.documents if self.documents is not None else self.texts or []
        return [d if isinstance(d, str) else d.text for d in docs]

    @property
    def truncation(self) -> Literal["end", "start", "none"]:
        return truncation(self.truncate, self.truncation_direction)


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    document: RerankDocument | None = None


class RerankResponse(BaseModel):
    id: str
    model: str
    results: list[RerankResult]
    usage: Usage
    meta: dict[str, Any] = Field(description="Cohere's api_version and billed_units.")


# --- classify -------------------------------------------------------------------------
class ClassifyRequest(_Request):
    input: Texts
    labels: list[str] | None = Field(None, description="Candidate labels for zero-shot.")
    multi_label: StrictBool = False
    hypothesis_template: str | None = Field(
        None, description="Zero-shot template with one {} (or {label}) for the label."
    )

    _template_slot = field_validator("hypothesis_template")(
        lambda value: None if value is None else check_template(value)
    )
    _labels_distinct = field_validator("labels")(lambda value: distinct_labels(value))

    @property
    def texts(self) -> list[str]:
        return _as_list(self.input)


class LabelScore(BaseModel):
    label: str
    score: float


class ClassifyData(BaseModel):
    index: int
    label: str = Field(description="The highest-scoring label.")
    score: float
    labels: list[LabelScore] = Field(description="Every label, highest score first.")
    expert: str = Field(description="The expert that answered (differs per item in a cascade).")
    confidence: float | None = Field(
        None, description="Calibrated confidence the cascade compared with its threshold."
    )


class ClassifyResponse(BaseModel):
    object: Literal["list"] = "list"
    model: str
    data: list[ClassifyData]
    usage: Usage


# --- ner ------------------------------------------------------------------------------
class NerRequest(_Request):
    input: Texts

    @property
    def texts(self) -> list[str]:
        return _as_list(self.input)


class EntityOut(BaseModel):
    type: str
    text: str
    start: int = Field(description="Character offset of the first character.")
    end: int = Field(description="Character offset just past the last character.")
    score: float | None = Field(None, description="Confidence; null when the backend has none.")


class NerData(BaseModel):
    index: int
    entities: list[EntityOut]


class NerResponse(BaseModel):
    object: Literal["list"] = "list"
    model: str
    data: list[NerData]
    usage: Usage
