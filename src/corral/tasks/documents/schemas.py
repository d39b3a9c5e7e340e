"""Bodies of ``POST /v1/documents/extract`` (JSON) and its multipart twin ``/upload``.

The page results are the expert's own models (``corral.tasks.documents.expert``), so the
HTTP answer and a coordinator's tool result have one shape."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from corral.ownership import QUALIFIED_PATTERN
from corral.server.schemas import _Request
from corral.tasks.documents.expert import (
    FIELDS_DESCRIPTION,
    FieldOut,
    FieldRequest,
    PageResult,
    SchemaName,
)
from corral.tasks.documents.layoutlmv3_fit import LabelledPage

__all__ = [
    "DocumentFitRequest",
    "DocumentRequest",
    "DocumentResponse",
    "FittedDeleteResponse",
    "FittedHead",
    "FittedList",
]


class DocumentRequest(_Request):
    document: str | None = Field(
        None,
        description="The PDF or image (PNG, JPEG, TIFF, ...) as base64 or a data: URL; "
        "or give `file_id`.",
    )
    file_id: str | None = Field(
        None, max_length=128, description="Id of an upload from POST /v1/files."
    )
    pages: list[int] | None = Field(
        None, min_length=1, description="0-based page numbers to read; omitted: every page."
    )
    labels: list[str] | None = Field(
        None,
        description="Key names to look for besides the built-in ones (invoice number, date, "
        "total, due date, ...); text ending with ':' is always a key.",
    )
    dpi: int | None = Field(
        None,
        ge=36,
        description="PDF render resolution, which is also the unit of the boxes (default 150).",
    )
    fields: (
        SchemaName | Annotated[list[FieldRequest], Field(min_length=1, max_length=64)] | None
    ) = Field(None, description=FIELDS_DESCRIPTION)
    fitted: str | None = Field(
        None,
        pattern=QUALIFIED_PATTERN,
        description="A head from POST /v1/documents/{name}/fit: the key's own, or "
        "'owner/name' for shared and admin keys.",
    )
    fitted_version: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_source(self) -> DocumentRequest:
        if (self.document is None) == (self.file_id is None):
            raise ValueError("give exactly one of `document` (base64) or `file_id`")
        return self


class DocumentFitRequest(_Request):
    """Labelled pages to fit a key/value tagging head on (a layoutlmv3 expert)."""

    pages: list[LabelledPage] = Field(min_length=1, max_length=64)
    epochs: int = Field(300, ge=1, le=5000)
    lr: float = Field(0.01, gt=0, le=1)
    seed: int = 0


class FittedHead(BaseModel):
    name: str
    owner: str | None = Field(None, description="The API key that fitted it (with keys).")
    versions: list[int]
    created: float = Field(description="The newest version's time (Unix seconds).")
    expert: str | None
    pages: int | None
    words: int | None
    metrics: dict[str, float]


class FittedList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FittedHead]


class FittedDeleteResponse(BaseModel):
    object: Literal["documents.fitted.deleted"] = "documents.fitted.deleted"
    name: str
    deleted: int = Field(description="How many versions were deleted.")


class DocumentResponse(BaseModel):
    object: Literal["document"] = "document"
    model: str
    pages: list[PageResult]
    text: str = Field(
        description="Every page's text in reading order, pages apart by a blank line."
    )
    fields: list[FieldOut] | None = Field(
        None, description="Each requested field from the page where it was found most surely."
    )
