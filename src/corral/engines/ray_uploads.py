"""Uploads named by id, read at the Ray ingress before a call leaves it.

``POST /v1/files`` lands in the ingress's ``FileStore``; an expert's replica is another
process whose own store never saw that upload. So every request that names uploads
(``file_id`` of a document, ``file_ids`` of detection, the ``file_id`` of a labelled page
to fit) is given the file's contents here, where the store, the caller's key (an upload
belongs to the key that made it) and the limits are, and the replica reads what it was
sent exactly as it reads an inline request. Errors are the embedded engine's: a 404 or
413 naming the same field, raised in the ingress.
"""

from __future__ import annotations

import asyncio
from typing import Any

from corral.config import LimitsConfig
from corral.tasks.detect.expert import DetectInput
from corral.tasks.documents.expert import DocumentInput
from corral.tasks.documents.layoutlmv3_fit import DocumentFitInput
from corral.uploads.files import FileStore
from corral.uploads.images import check_image_count, decode_images

__all__ = ["with_uploads"]


async def with_uploads(request: Any, files: FileStore, limits: LimitsConfig) -> Any:
    """``request`` carrying the contents of the uploads it names (a copy; the caller's
    request is left as it was, so a retry or a second expert sees the original)."""
    if isinstance(request, DocumentInput) and request._data is None:
        resolved = request.model_copy()
        resolved._data = files.get(request.file_id, param="file_id")
        return resolved
    if isinstance(request, DetectInput) and request._frames is None:
        return await asyncio.to_thread(_decoded, request, files, limits)
    if isinstance(request, DocumentFitInput):
        pages = [page.model_copy() for page in request.pages]
        for n, page in enumerate(pages):
            if page._data is None and page.file_id is not None:
                page._data = files.get(page.file_id, param=f"pages[{n}].file_id")
        return request.model_copy(update={"pages": pages})
    return request


def _decoded(request: DetectInput, files: FileStore, limits: LimitsConfig) -> DetectInput:
    """The images decoded here under the request limits, as the HTTP route decodes them."""
    check_image_count(len(request.file_ids), limits, param="file_ids")
    params = [f"file_ids[{i}]" for i in range(len(request.file_ids))]
    blobs = [(files.get(fid, param=p), p) for fid, p in zip(request.file_ids, params, strict=True)]
    options = request.model_dump(exclude={"file_ids"})
    return DetectInput.with_frames(decode_images(blobs, limits), params, **options)
