"""A document's bytes (PDF or image) as pages: words from the PDF text layer when a page
has one, else an image to OCR.

Why the text layer first: it is exact and about a hundred times faster than OCR; only
pages without text (scans) are rendered and read. Boxes are in pixels of the page as
rendered at ``dpi`` (PDF) or of the image itself, so both paths report in the same units.

Limits are checked before work is done: the page count against ``max_pages`` and each
page's rendered size (from its size in points, before rendering) against
``max_image_pixels``; corrupt or encrypted files are a 422.

PDFium is not thread-safe and is one library per process, so every call into it holds
one process-wide lock (``_PDFIUM``): two document experts run on two worker threads.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from corral.errors import InvalidRequest, PayloadTooLarge
from corral.experts.base import require
from corral.tasks.documents.layout import Box, Word
from corral.uploads.images import check_aspect, decode_image

__all__ = ["Page", "PageLimits", "is_pdf", "load_pages"]

# a lock, not state: it guards the one PDFium instance the process has (see module docs)
_PDFIUM = threading.Lock()


@dataclass(frozen=True)
class PageLimits:
    max_pages: int
    max_pixels: int
    max_dpi: int


@dataclass
class Page:
    index: int
    width: int
    height: int
    words: list[Word] | None  # from the PDF text layer; None: the page needs OCR
    image: np.ndarray | None  # RGB uint8, when rendered (needed for OCR or layout models)
    rules: list[Box] = field(default_factory=list)  # the PDF's drawn lines and rectangles

    @property
    def source(self) -> str:
        return "text" if self.words is not None else "ocr"


def is_pdf(data: bytes) -> bool:
    """PDF readers accept the header anywhere in the first kilobyte; so does this."""
    return b"%PDF-" in data[:1024]


def load_pages(
    data: bytes,
    *,
    pages: list[int] | None,
    dpi: int,
    limits: PageLimits,
    need_image: bool,
    param: str,
) -> list[Page]:
    """The selected pages (all when ``pages`` is None) of a PDF or an image."""
    if dpi > limits.max_dpi:
        raise PayloadTooLarge(
            f"dpi is {dpi}; server.limits.max_render_dpi is {limits.max_dpi}", param="dpi"
        )
    if not is_pdf(data):
        if pages not in (None, [0]):
            raise InvalidRequest(f"pages: {param} is an image, it has one page (0)", param="pages")
        image = decode_image(data, max_pixels=limits.max_pixels, param=param)
        return [Page(0, image.shape[1], image.shape[0], None, image)]
    pdfium = require("pypdfium2", "documents")
    with _PDFIUM:
        try:
            document = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            raise InvalidRequest(
                f"{param} is not a PDF corral can read ({exc}); encrypted PDFs are not supported",
                param=param,
            ) from None
        try:
            count = len(document)
            selected = _select(pages, count, limits.max_pages, param)
            return [
                _page(_load(document, i, param, pdfium), i, dpi, limits.max_pixels, need_image,
                      param, pdfium)
                for i in selected
            ]
        finally:
            document.close()


def _load(document: Any, index: int, param: str, pdfium: Any) -> Any:
    """Page ``index``; a page pdfium cannot load (a page tree that loops, a missing
    object) is the document's fault: a 422."""
    try:
        return document[index]
    except pdfium.PdfiumError as exc:
        raise InvalidRequest(
            f"{param} page {index} cannot be loaded ({exc}): its page tree is broken",
            param=param,
        ) from None


def _select(pages: list[int] | None, count: int, max_pages: int, param: str) -> list[int]:
    if count == 0:
        raise InvalidRequest(f"{param} has no pages", param=param)
    selected = list(range(count)) if pages is None else list(dict.fromkeys(pages))
    for i in selected:
        if not 0 <= i < count:
            raise InvalidRequest(
                f"pages: {i} is not a page of {param} (it has {count}: 0 to {count - 1})",
                param="pages",
            )
    if len(selected) > max_pages:
        raise PayloadTooLarge(
            f"{param} has {len(selected)} pages to read; server.limits.max_pages is "
            f"{max_pages} (send fewer with `pages`)",
            param="pages" if pages is not None else param,
        )
    return selected


def _page(
    page: Any, index: int, dpi: int, max_pixels: int, need_image: bool, param: str, pdfium: Any
) -> Page:
    try:
        width_pt, height_pt = page.get_size()
        scale = dpi / 72.0
        width, height = max(1, round(width_pt * scale)), max(1, round(height_pt * scale))
        check_aspect(width, height, param=f"{param} page {index}")
        if width * height > max_pixels:
            raise PayloadTooLarge(
                f"{param} page {index} renders to {width}x{height} = {width * height} pixels at "
                f"{dpi} dpi; server.limits.max_image_pixels is {max_pixels} (lower `dpi`)",
                param=param,
            )
        words: list[Word] = []
        rules: list[Box] = []
        if page.get_rotation() % 360 == 0:  # a rotated page's text boxes are unrotated: OCR it
            textpage = page.get_textpage()
            try:
                words = _text_layer(textpage, height_pt, scale, pdfium)
            finally:
                textpage.close()
            if words:
                rules = _paths(page, height_pt, scale)
        image = None
        if need_image or not words:
            bitmap = page.render(scale=scale)
            image = np.ascontiguousarray(bitmap.to_numpy()[:, :, :3][:, :, ::-1])  # BGR(x)->RGB
            bitmap.close()
            height, width = image.shape[:2]
        return Page(index, width, height, words or None, image, rules)
    except pdfium.PdfiumError as exc:
        raise InvalidRequest(f"{param} page {index} cannot be read ({exc})", param=param) from None
    finally:
        page.close()


_MAX_PATHS = 5000  # a drawing, not a form: its boxes are not worth the time


def _paths(page: Any, height_pt: float, scale: float) -> list[Box]:
    """Pixel boxes of the page's path objects (lines and rectangles a form is drawn with)."""
    import pypdfium2.raw as raw

    boxes: list[Box] = []
    for obj in page.get_objects(filter=(raw.FPDF_PAGEOBJ_PATH,), max_depth=2):
        if len(boxes) >= _MAX_PATHS:
            return []
        left, bottom, right, top = obj.get_bounds()
        y0, y1 = (height_pt - top) * scale, (height_pt - bottom) * scale
        boxes.append((left * scale, y0, right * scale, y1))
    return boxes


def _text_layer(textpage: Any, height_pt: float, scale: float, pdfium: Any) -> list[Word]:
    """Words of the text layer: characters joined until a space, a line break, or a jump
    in position (PDFs often place words without any space character between them)."""
    raw = pdfium.raw
    words: list[Word] = []
    chars: list[str] = []
    boxes: list[tuple[float, float, float, float]] = []

    def flush() -> None:
        if chars:
            x0 = min(b[0] for b in boxes)
            y0 = min(b[1] for b in boxes)
            x1 = max(b[2] for b in boxes)
            y1 = max(b[3] for b in boxes)
            words.append(Word("".join(chars), (x0, y0, x1, y1), 1.0))
            chars.clear()
            boxes.clear()

    for i in range(textpage.count_chars()):
        char = chr(raw.FPDFText_GetUnicode(textpage, i) or 32)
        if char.isspace() or char == "\x00":
            flush()
            continue
        left, bottom, right, top = textpage.get_charbox(i, loose=True)
        box = (left * scale, (height_pt - top) * scale, right * scale, (height_pt - bottom) * scale)
        if boxes:
            last = boxes[-1]
            tall = max(1e-6, last[3] - last[1])
            if box[0] - last[2] > 0.25 * tall or abs(box[1] - last[1]) > 0.5 * tall:
                flush()
        chars.append(char)
        boxes.append(box)
    flush()
    return words
