"""Bodies of ``/v1/files``: uploads that later requests (and tool calls) name by id."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class FileUpload(BaseModel):
    """A JSON upload to ``/v1/files`` (the other way is multipart, field ``file``)."""

    model_config = ConfigDict(extra="forbid")

    data: str = Field(description="The file as base64 or a data: URL.")
    filename: str | None = Field(None, max_length=255)
    content_type: str | None = Field(None, max_length=255)


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    expires_at: int
    filename: str | None
    content_type: str | None


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True
