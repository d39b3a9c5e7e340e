"""HTTP bodies of ``/v1/detect`` and ``/v1/files``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from corral.server.schemas import _Request

__all__ = [
    "DetectData",
    "DetectRequest",
    "DetectResponse",
    "DetectionOut",
]

_IMAGE = "An image as base64 or a data: URL (data:image/png;base64,...); URLs are not fetched."


class DetectRequest(_Request):
    """Images inline (``images`` or ``image``) or uploaded before (``file_ids``): one of them."""

    images: list[str] | None = Field(None, min_length=1, description=f"Images. {_IMAGE}")
    image: str | None = Field(None, description=f"One image. {_IMAGE}")
    file_ids: list[str] | None = Field(
        None, min_length=1, description="Ids from POST /v1/files, in place of inline images."
    )
    classes: list[str] | None = Field(
        None, min_length=1, max_length=1000, description="Only these labels; omitted: all."
    )
    score_threshold: float = Field(0.25, ge=0.0, le=1.0, description="Drop boxes scoring less.")
    iou_threshold: float = Field(
        0.45, ge=0.0, le=1.0, description="Merge same-label boxes overlapping more (NMS)."
    )
    max_detections: int = Field(100, ge=1, le=1000, description="Most boxes per image.")

    @model_validator(mode="after")
    def _one_source(self) -> DetectRequest:
        given = [n for n in ("images", "image", "file_ids") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of images, image or file_ids"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    def sources(self) -> tuple[str, list[str]]:
        """(field, values) of whichever image field was given."""
        if self.images is not None:
            return "images", self.images
        if self.image is not None:
            return "image", [self.image]
        return "file_ids", self.file_ids or []


class DetectionOut(BaseModel):
    box: list[float] = Field(description="[x1, y1, x2, y2] in the original image's pixels.")
    label: str
    score: float


class DetectData(BaseModel):
    index: int
    width: int
    height: int
    detections: list[DetectionOut]


class DetectResponse(BaseModel):
    object: Literal["list"] = "list"
    model: str
    data: list[DetectData]
