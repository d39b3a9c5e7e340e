"""Rendering ``heldout_documents`` as a PDF with a text layer (reportlab) or as a
150-dpi scan (Pillow): the same drawing, two ways a reader gets it."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from corral.eval.heldout_documents import HeldoutDocument

__all__ = ["render_pdf", "render_scan"]


def _pdf_font(layout: str, bold: bool) -> str:
    family = {"till": "Courier", "boxed": "Helvetica"}.get(layout, "Times")
    if family == "Times":
        return "Times-Bold" if bold else "Times-Roman"
    return f"{family}-Bold" if bold else family


def render_pdf(doc: HeldoutDocument) -> bytes:
    """One PDF page with a text layer; boxes as stroked rectangles."""
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    scale = 72 / 150
    width_pt, height_pt = doc.size[0] * scale, doc.size[1] * scale
    pdf = canvas.Canvas(buffer, pagesize=(width_pt, height_pt))
    pdf.setLineWidth(1)
    for x0, y0, x1, y1 in doc.rects:
        pdf.rect(x0 * scale, height_pt - y1 * scale, (x1 - x0) * scale, (y1 - y0) * scale)
    for x, y, text, size, anchor, bold in doc.texts:
        pdf.setFont(_pdf_font(doc.layout, bold), size * scale)
        draw = {"l": pdf.drawString, "r": pdf.drawRightString, "m": pdf.drawCentredString}
        draw[anchor](x * scale, height_pt - y * scale, text)
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


_TTF = {
    (False, False): "DejaVuSerif.ttf",
    (False, True): "DejaVuSerif-Bold.ttf",
    (True, False): "DejaVuSansMono.ttf",
    (True, True): "DejaVuSansMono-Bold.ttf",
}


def _font(size: int, bold: bool, mono: bool) -> Any:
    from PIL import ImageFont

    path = Path("/usr/share/fonts/truetype/dejavu") / _TTF[(mono, bold)]
    if path.exists():
        return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)


def render_scan(
    doc: HeldoutDocument,
    *,
    angle: float = 0.0,
    noise: float = 0.0,
    blur: float = 0.0,
    seed: int = 0,
) -> Any:
    """A PIL RGB page as a 150-dpi scan: rotated ``angle`` degrees, Gaussian ``noise``
    (std, 0-255) and a ``blur`` radius in pixels."""
    from PIL import Image, ImageDraw, ImageFilter

    page = Image.new("RGB", doc.size, "white")
    draw = ImageDraw.Draw(page)
    for x0, y0, x1, y1 in doc.rects:
        draw.rectangle((x0, y0, x1, y1), outline=(40, 40, 40), width=2)
    for x, y, text, size, anchor, bold in doc.texts:
        font = _font(size, bold, doc.layout == "till")
        draw.text((x, y), text, fill=(25, 25, 25), font=font, anchor=anchor + "s")
    if blur:
        page = page.filter(ImageFilter.GaussianBlur(blur))
    if angle:
        page = page.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor="white")
    if noise:
        pixels = np.asarray(page, dtype=np.float32)
        pixels += np.random.default_rng(seed).normal(0, noise, pixels.shape)
        page = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return page
