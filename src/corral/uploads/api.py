"""``/v1/files``: uploads kept in memory and named by id, so a request (or an LLM's tool
call) names an image or a PDF instead of inlining it."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile as StarletteUpload
from starlette.exceptions import HTTPException

from corral.errors import InvalidRequest
from corral.server.deps import RuntimeDep
from corral.server.schemas import ERROR_RESPONSES, ErrorResponse
from corral.uploads.files import StoredFile
from corral.uploads.images import decode_base64
from corral.uploads.schemas import FileDeleted, FileObject, FileUpload

api = APIRouter(prefix="/v1", tags=["files"], responses=ERROR_RESPONSES)


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
