"""``/v1/detect`` (JSON), ``/v1/detect/upload`` (multipart) and the ``/v1/files`` uploads
that let a request (or an LLM's tool call) name an image by id instead of inlining it.

Images are decoded here, off the event loop and under ``server.limits`` (count, pixels
per image and per request), before any model runs; the expert gets the arrays.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from starlette.datastructures import UploadFile as StarletteUpload
from starlette.exceptions import HTTPException

from corral.config import LimitsConfig, Task
from corral.errors import InvalidRequest
from corral.experts.detect import DetectInput, ImageDetections
from corral.files import FileStore, StoredFile
from corral.images import check_image_count, decode_base64, decode_images
from corral.routing import Router
from corral.server.deps import RouterDep, RuntimeDep
from corral.server.schemas import ERROR_RESPONSES, ErrorResponse
from corral.server.schemas_vision import (
    DetectData,
    DetectionOut,
    DetectRequest,
    DetectResponse,
    FileDeleted,
    FileObject,
    FileUpload,
)

__all__ = ["api"]

api = APIRouter(prefix="/v1", tags=["vision"], responses=ERROR_RESPONSES)

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            "application/json": {"schema": FileUpload.model_json_schema()},
        },
    }
}


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


# --- /v1/files: uploads kept in memory, named by id ---------------------------------------
@api.post(
    "/files",
    response_model=FileObject,
    openapi_extra=_UPLOAD_BODY,
    responses={415: {"model": ErrorResponse, "description": "Neither multipart nor JSON."}},
)
async def upload_file(request: Request, runtime: RuntimeDep) -> FileObject:
    """Keep a file (an image, a PDF) for a while; later requests name it by its id.
    Multipart (field ``file``) or JSON (``{"data": base64, "filename", "content_type"}``)."""
    store = runtime.files
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        async with request.form(max_files=1, max_fields=4) as form:
            upload = form.get("file")
            if not isinstance(upload, StarletteUpload):
                raise InvalidRequest(
                    "multipart upload needs a file in the field 'file'", param="file"
                )
            data = await upload.read(store.max_file_bytes + 1)
            filename, content_type = upload.filename, upload.content_type
    elif kind == "application/json":
        body = FileUpload.model_validate_json(await request.body())
        data = decode_base64(body.data, param="data")
        filename, content_type = body.filename, body.content_type
    else:
        raise HTTPException(
            415, "send the file as multipart/form-data (field 'file') or application/json"
        )
    file_id = store.put(data, filename, content_type)
    return _file_object(store.info(file_id))


@api.get("/files/{file_id}", response_model=FileObject)
async def get_file(file_id: str, runtime: RuntimeDep) -> FileObject:
    """An upload's size and expiry. There is no listing: an id is what grants access to an
    upload, and a listing would hand every client everyone's ids."""
    return _file_object(runtime.files.info(file_id))


@api.delete("/files/{file_id}", response_model=FileDeleted)
async def delete_file(file_id: str, runtime: RuntimeDep) -> FileDeleted:
    runtime.files.delete(file_id)
    return FileDeleted(id=file_id)


def _file_object(info: StoredFile) -> FileObject:
    return FileObject(
        id=info.id,
        bytes=info.bytes,
        created_at=int(info.created_at),
        expires_at=int(info.expires_at),
        filename=info.filename,
        content_type=info.content_type,
    )
