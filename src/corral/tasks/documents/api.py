"""``POST /v1/documents/extract``: words, lines, key/value pairs and tables of a PDF or
image, sent as base64 JSON, by file id, or as a multipart upload (``.../upload``);
``POST /v1/documents/{name}/fit``: a tagging head fitted on labelled pages, listed and
deleted under ``/v1/documents/fitted`` (read from the artifact store, no model involved)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile

from corral.artifacts import ArtifactInfo
from corral.config import LimitsConfig, Task
from corral.errors import InvalidRequest
from corral.fitted import FittedRoutes, Owner
from corral.input_limits import check_labels, check_pages, check_texts
from corral.ownership import qualify
from corral.server.deps import RouterDep
from corral.server.schemas import ERROR_RESPONSES
from corral.tasks.documents.expert import DocumentInput, DocumentResult
from corral.tasks.documents.layoutlmv3_fit import KIND, DocumentFitInput, DocumentFitResult
from corral.tasks.documents.schemas import (
    DocumentFitRequest,
    DocumentRequest,
    DocumentResponse,
    FittedDeleteResponse,
    FittedHead,
    FittedList,
)
from corral.uploads.images import decode_base64

__all__ = ["api"]

api = APIRouter(prefix="/v1", tags=["documents"], responses=ERROR_RESPONSES)


def _check(labels: list[str] | None, pages: list[int] | None, limits: LimitsConfig) -> None:
    check_labels(labels, limits)
    check_pages(pages, limits)


async def _answer(router: RouterDep, model: str | None, request: DocumentInput) -> DocumentResponse:
    handle, result = await router.serve(Task.DOCUMENT, model, request)
    assert isinstance(result, DocumentResult)
    return DocumentResponse(
        model=handle.name, pages=result.pages, text=result.text, fields=result.fields
    )


@api.post("/documents/extract", response_model=DocumentResponse)
async def extract(body: DocumentRequest, router: RouterDep) -> DocumentResponse:
    """Read a document given as base64 (``document``) or by ``file_id``."""
    _check(body.labels, body.pages, router.runtime.config.server.limits)
    fields = {
        "pages": body.pages,
        "labels": body.labels,
        "dpi": body.dpi,
        "fields": body.fields,
        "fitted": body.fitted,
        "fitted_version": body.fitted_version,
    }
    if body.document is not None:
        data = decode_base64(body.document, param="document")
        request = DocumentInput.inline(data, param="document", **fields)
    else:
        assert body.file_id is not None
        request = DocumentInput(file_id=body.file_id, **fields)
    return await _answer(router, body.model, request)


@api.post("/documents/{name}/fit", response_model=DocumentFitResult)
async def fit(
    name: str, body: DocumentFitRequest, router: RouterDep, owner: Owner = None
) -> DocumentFitResult:
    """Fit a key/value tagging head on labelled pages; stored as a new version of ``name``
    (use it with ``fitted: name`` on /v1/documents/extract). With keys: the key's own."""
    limits = router.runtime.config.server.limits
    for n, page in enumerate(body.pages):
        if page.document is not None:
            page._data = decode_base64(page.document, param=f"pages[{n}].document")
        texts = [p.key for p in page.pairs] + [p.value for p in page.pairs]
        check_texts(texts, limits, param=f"pages[{n}].pairs")
    request = DocumentFitInput(
        name=_ref(name, owner), pages=body.pages, epochs=body.epochs, lr=body.lr, seed=body.seed
    )
    model = body.model or _fitting_expert(router)
    _, result = await router.serve(Task.DOCUMENT, model, request)
    assert isinstance(result, DocumentFitResult)
    return result.model_copy(update={"name": name})  # as the caller named it


def _described(infos: list[ArtifactInfo]) -> FittedHead:
    newest = infos[-1]
    return FittedHead(
        name=newest.name,
        owner=newest.owner,
        versions=[i.version for i in infos],
        created=newest.created,
        expert=newest.meta.get("expert"),
        pages=newest.meta.get("pages"),
        words=newest.meta.get("words"),
        metrics=newest.meta.get("metrics", {}),
    )


FittedRoutes(
    kind=KIND,
    what="fitted heads",
    info=FittedHead,
    describe=_described,
    listing=FittedList,
    deleted=FittedDeleteResponse,
).mount(api, "/documents/fitted")


def _ref(name: str, owner: str | None) -> str:
    return qualify(name, owner, what="fitted heads")


def _fitting_expert(router: RouterDep) -> str:
    """The first configured document expert that can fit a head."""
    for spec in router.runtime.config.models:
        handle = router.runtime.handles.get(spec.name)
        if handle is not None and handle.task == Task.DOCUMENT and "layoutlmv3" in spec.model:
            return spec.name
    raise InvalidRequest(
        "no layoutlmv3 document expert is configured to fit; add one or name it in `model`",
        param="model",
    )


def _fields(text: str | None) -> Any:
    """Form field ``fields``: a schema name, or a JSON list of {name, type, labels}."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    if not text.startswith("["):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"fields is not valid JSON ({exc.msg})", param="fields") from None


def _pages(text: str | None) -> list[int] | None:
    """Form field ``pages``: "0,2,3"."""
    if text is None or not text.strip():
        return None
    try:
        return [int(p) for p in text.split(",")]
    except ValueError:
        raise InvalidRequest(
            f"pages must be comma-separated page numbers such as 0,2; got {text[:40]!r}",
            param="pages",
        ) from None


@api.post("/documents/extract/upload", response_model=DocumentResponse)
async def extract_upload(
    router: RouterDep,
    file: Annotated[UploadFile, File(description="The PDF or image.")],
    model: Annotated[str | None, Form()] = None,
    pages: Annotated[str | None, Form(description="Comma-separated 0-based pages.")] = None,
    labels: Annotated[list[str] | None, Form(description="Extra key names; repeat.")] = None,
    dpi: Annotated[int | None, Form(ge=36)] = None,
    fields: Annotated[
        str | None,
        Form(description="A schema name (invoice, receipt) or a JSON list of {name, type}."),
    ] = None,
) -> DocumentResponse:
    """Read a document sent as a multipart/form-data upload (field ``file``)."""
    selected = _pages(pages)
    _check(labels, selected, router.runtime.config.server.limits)
    data = await file.read()
    if not data:
        raise InvalidRequest("file is empty", param="file")
    request = DocumentInput.inline(
        data, param="file", pages=selected, labels=labels, dpi=dpi, fields=_fields(fields)
    )
    return await _answer(router, model, request)
