"""``/v1/detect`` (JSON: base64 images or ``file_ids`` uploaded to ``/v1/files``) and
``/v1/detect/upload`` (multipart).

Images are decoded here, off the event loop and under ``server.limits`` (count, pixels
per image and per request), before any model runs; the expert gets the arrays.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile

from corral.config import LimitsConfig, Task
from corral.routing import Router
from corral.server.deps import RouterDep
from corral.server.schemas import ERROR_RESPONSES
from corral.tasks.detect.expert import DetectInput, ImageDetections
from corral.tasks.detect.schemas import (
    DetectData,
    DetectionOut,
    DetectRequest,
    DetectResponse,
)
from corral.uploads.files import FileStore
from corral.uploads.images import check_image_count, decode_base64, decode_images

__all__ = ["api"]

api = APIRouter(prefix="/v1", tags=["vision"], responses=ERROR_RESPONSES)


@api.post("/detect", response_model=DetectResponse)
async def detect(body: DetectRequest, router: RouterDep) -> DetectResponse:
    """Boxes, labels and scores for each image, in the image's own pixel coordinates."""
    router.runtime.find(Task.DETECT, body.model)  # an unknown model is a 404 before decoding
    limits = router.runtime.config.server.limits
    field, values = body.sources()
    check_image_count(len(values), limits, param=field)
    params = [field] if field == "image" else [f"{field}[{i}]" for i in range(len(values))]
    files = router.runtime.files
    frames = await asyncio.to_thread(_decode_sources, field, values, params, files, limits)
    options = body.model_dump(include={"classes", "score_threshold", "iou_threshold"})
    request = DetectInput.with_frames(frames, params, max_detections=body.max_detections, **options)
    return await _run(router, body.model, request)


@api.post("/detect/upload", response_model=DetectResponse)
async def detect_upload(
    router: RouterDep,
    files: Annotated[list[UploadFile], File(description="One or more image files.")],
    model: Annotated[str | None, Form()] = None,
    classes: Annotated[list[str] | None, Form(description="Only these labels.")] = None,
    score_threshold: Annotated[float, Form(ge=0.0, le=1.0)] = 0.25,
    iou_threshold: Annotated[float, Form(ge=0.0, le=1.0)] = 0.45,
    max_detections: Annotated[int, Form(ge=1, le=1000)] = 100,
) -> DetectResponse:
    """``/v1/detect`` as a multipart upload (field ``files``, repeated for several)."""
    router.runtime.find(Task.DETECT, model)
    limits = router.runtime.config.server.limits
    check_image_count(len(files), limits, param="files")
    blobs = [(await upload.read(), f"files[{i}]") for i, upload in enumerate(files)]
    frames = await asyncio.to_thread(decode_images, blobs, limits)
    request = DetectInput.with_frames(
        frames,
        [param for _, param in blobs],
        classes=classes or None,
        score_threshold=score_threshold,
        iou_threshold=iou_threshold,
        max_detections=max_detections,
    )
    return await _run(router, model, request)


async def _run(router: Router, model: str | None, request: DetectInput) -> DetectResponse:
    handle, results = await router.serve(Task.DETECT, model, request)
    return DetectResponse(model=handle.name, data=[_data(i, r) for i, r in enumerate(results)])


def _data(index: int, result: ImageDetections) -> DetectData:
    return DetectData(
        index=index,
        width=result.width,
        height=result.height,
        detections=[
            DetectionOut(box=d.box, label=d.label, score=d.score) for d in result.detections
        ],
    )


def _decode_sources(
    field: str, values: list[str], params: list[str], files: FileStore, limits: LimitsConfig
) -> list[Any]:
    """Inline base64 images, or the bytes of uploaded files, decoded under the limits."""
    if field == "file_ids":
        blobs = [(files.get(v, param=p), p) for v, p in zip(values, params, strict=True)]
    else:
        blobs = [(decode_base64(v, param=p), p) for v, p in zip(values, params, strict=True)]
    return decode_images(blobs, limits)
