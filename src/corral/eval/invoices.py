"""Synthetic invoices with known fields, for testing and scoring document extraction.

No public invoice set ships in a package, so corral draws its own, in three layouts so
a score is not the score of one template:

* ``classic``: A4; ``Label: value`` header fields, a line-item table (Description / Qty /
  Unit price / Amount) with a header row, totals with ``Label:`` on the right;
* ``receipt``: a narrow till slip; centred shop name, values right-aligned at the edge,
  labels without colons (``Total``), item rows (description, qty, amount) with no header
  row, dashed rules between blocks;
* ``stacked``: A4; header labels in a row *above* their values (no colons), a table
  whose descriptions wrap onto a second line, and a ``Total`` label above its value.

Pages are rendered with Pillow's bundled font as a scan (page image: optional noise and
a slight rotation) or with reportlab as a PDF that has a text layer. Scoring compares
extracted key/value pairs and table cells with the truth.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "FIELDS",
    "LAYOUTS",
    "Invoice",
    "cer",
    "field_scores",
    "make_invoice",
    "render_image",
    "render_pdf",
    "table_accuracy",
]

FIELDS = ("Invoice Number", "Date", "Due Date", "Total")  # the classic and stacked fields
LAYOUTS = ("classic", "receipt", "stacked")
_ITEMS = (
    "Consulting services", "Widget assembly", "Cloud hosting", "Support plan", "Training day",
    "Laptop stand", "USB cable", "Office chair", "Software licence", "Data migration",
)  # fmt: skip
_DETAILS = (
    "for the March project", "incl. setup and travel", "annual plan, 12 seats",
    "on-site, two engineers", "per unit, boxed", "with extended warranty",
)  # fmt: skip
PAGE = (1240, 1754)  # A4 at 150 dpi
RECEIPT_PAGE = (620, 800)  # a till slip about 105 mm wide at 150 dpi

Op = tuple[float, float, str, int, str]  # x, y, text, size, anchor ('l', 'r' or 'm')


@dataclass(frozen=True)
class Invoice:
    number: str
    date: str
    due_date: str
    seller: str
    items: tuple[tuple[str, int, float], ...]  # description ("\n": wrapped), qty, unit price
    layout: str = "classic"

    @property
    def page(self) -> tuple[int, int]:
        return RECEIPT_PAGE if self.layout == "receipt" else PAGE

    @property
    def rows(self) -> list[list[str]]:
        """The line-item table as text, header first (a receipt has no header row); a
        wrapped description is one cell."""
        if self.layout == "receipt":
            return [[d, str(q), f"{q * p:,.2f}"] for d, q, p in self.items]
        rows = [["Description", "Qty", "Unit price", "Amount"]]
        for desc, qty, price in self.items:
            rows.append(
                [" ".join(desc.split("\n")), str(qty), f"{price:,.2f}", f"{qty * price:,.2f}"]
            )
        return rows

    @property
    def subtotal(self) -> float:
        return sum(q * p for _, q, p in self.items)

    @property
    def total(self) -> str:
        return f"{self.subtotal * 1.2:,.2f}"

    @property
    def fields(self) -> dict[str, str]:
        """The key/value pairs a reader should find, keyed as the page labels them."""
        if self.layout == "receipt":
            return {"Receipt No": self.number, "Date": self.date, "Total": self.total}
        return dict(zip(FIELDS, (self.number, self.date, self.due_date, self.total), strict=True))


def make_invoice(rng: random.Random, layout: str = "classic") -> Invoice:
    if layout not in LAYOUTS:
        raise ValueError(f"layout is {layout!r}; use one of {', '.join(LAYOUTS)}")
    day, month = rng.randint(1, 28), rng.randint(1, 11)
    items = tuple(
        (desc, rng.randint(1, 12), round(rng.uniform(5, 900), 2))
        for desc in rng.sample(_ITEMS, rng.randint(2, 5))
    )
    if layout == "stacked":  # every other description wraps onto a second line
        items = tuple(
            (f"{d}\n{rng.choice(_DETAILS)}" if i % 2 == 0 else d, q, p)
            for i, (d, q, p) in enumerate(items)
        )
    prefix = "R" if layout == "receipt" else "INV"
    return Invoice(
        number=f"{prefix}-{rng.randint(2020, 2025)}-{rng.randint(100, 99999):05d}",
        date=f"2024-{month:02d}-{day:02d}",
        due_date=f"2024-{month + 1:02d}-{day:02d}",
        seller=rng.choice(("Acme Supplies Ltd", "Northwind Traders", "Globex GmbH")),
        items=items,
        layout=layout,
    )


def _layout(invoice: Invoice) -> list[Op]:
    """(x, y, text, size, anchor) in pixels at 150 dpi."""
    draw = {"classic": _classic, "receipt": _receipt, "stacked": _stacked}[invoice.layout]
    return draw(invoice)


def _classic(invoice: Invoice) -> list[Op]:
    ops: list[Op] = [
        (100, 90, invoice.seller, 40, "l"),
        (100, 150, "12 Market Street, Springfield", 24, "l"),
        (900, 90, "INVOICE", 44, "l"),
    ]
    for i, (label, value) in enumerate(
        (
            ("Invoice Number:", invoice.number),
            ("Date:", invoice.date),
            ("Due Date:", invoice.due_date),
        )
    ):
        ops += [(100, 260 + 45 * i, label, 26, "l"), (380, 260 + 45 * i, value, 26, "l")]
    columns = ((100, "l"), (640, "r"), (880, "r"), (1140, "r"))
    for r, row in enumerate(invoice.rows):
        y = 480 + 50 * r
        for (x, anchor), cell in zip(columns, row, strict=True):
            ops.append((x, y, cell, 26, anchor))
    y = 480 + 50 * len(invoice.rows) + 60
    for i, (label, value) in enumerate(
        (
            ("Subtotal:", f"{invoice.subtotal:,.2f}"),
            ("Tax (20%):", f"{invoice.subtotal * 0.2:,.2f}"),
            ("Total:", invoice.total),
        )
    ):
        ops += [(800, y + 45 * i, label, 26, "l"), (1140, y + 45 * i, value, 26, "r")]
    ops.append((100, y + 220, "Thank you for your business.", 24, "l"))
    return ops


def _receipt(invoice: Invoice) -> list[Op]:
    left, right, middle = 40, 580, RECEIPT_PAGE[0] / 2
    rule = "-" * 44
    ops: list[Op] = [
        (middle, 80, invoice.seller.upper(), 30, "m"),
        (middle, 118, "12 Market Street, Springfield", 20, "m"),
        (left, 190, "Receipt No:", 22, "l"),
        (right, 190, invoice.number, 22, "r"),
        (left, 226, "Date:", 22, "l"),
        (right, 226, invoice.date, 22, "r"),
        (middle, 266, rule, 20, "m"),
    ]
    y = 310
    for desc, qty, amount in invoice.rows:
        ops += [(left, y, desc, 22, "l"), (380, y, qty, 22, "r"), (right, y, amount, 22, "r")]
        y += 36
    ops.append((middle, y, rule, 20, "m"))
    for label, value, size in (
        ("Subtotal", f"{invoice.subtotal:,.2f}", 22),
        ("Tax", f"{invoice.subtotal * 0.2:,.2f}", 22),
        ("TOTAL", invoice.total, 28),
    ):
        y += 44
        ops += [(left, y, label, size, "l"), (right, y, value, size, "r")]
    ops += [(middle, y + 70, "Thank you for shopping with us", 20, "m")]
    return ops


def _stacked(invoice: Invoice) -> list[Op]:
    ops: list[Op] = [
        (100, 90, invoice.seller, 40, "l"),
        (1140, 90, "INVOICE", 44, "r"),
        (100, 140, "12 Market Street, Springfield", 22, "l"),
    ]
    for x, label, value in (
        (100, "Invoice Number", invoice.number),
        (520, "Date", invoice.date),
        (820, "Due Date", invoice.due_date),
    ):
        ops += [(x, 250, label, 20, "l"), (x, 286, value, 26, "l")]
    ops += [(100, 360, "Bill To", 20, "l"), (100, 396, "Initech Corporation", 26, "l")]
    columns = ((100, "l"), (640, "r"), (880, "r"), (1140, "r"))
    y = 490
    for (x, anchor), cell in zip(columns, invoice.rows[0], strict=True):
        ops.append((x, y, cell, 26, anchor))
    for desc, qty, price in invoice.items:
        y += 50
        first, _, wrapped = desc.partition("\n")
        cells = (first, str(qty), f"{price:,.2f}", f"{qty * price:,.2f}")
        for (x, anchor), cell in zip(columns, cells, strict=True):
            ops.append((x, y, cell, 26, anchor))
        if wrapped:
            y += 32
            ops.append((100, y, wrapped, 22, "l"))
    y += 100
    ops += [
        (800, y, "Subtotal", 24, "l"),
        (1140, y, f"{invoice.subtotal:,.2f}", 24, "r"),
        (800, y + 42, "Tax", 24, "l"),
        (1140, y + 42, f"{invoice.subtotal * 0.2:,.2f}", 24, "r"),
        (1140, y + 110, "Total", 22, "r"),
        (1140, y + 150, invoice.total, 32, "r"),
        (100, y + 260, "Thank you for your business.", 24, "l"),
    ]
    return ops


def render_image(invoice: Invoice, *, noise: float = 0.0, angle: float = 0.0, seed: int = 0) -> Any:
    """A PIL RGB page image: gray text on white, Gaussian noise (std, 0-255), rotated by
    ``angle`` degrees as a crooked scan is."""
    from PIL import Image, ImageDraw, ImageFont

    page = Image.new("RGB", invoice.page, "white")
    draw = ImageDraw.Draw(page)
    fonts: dict[int, Any] = {}
    for x, y, text, size, anchor in _layout(invoice):
        font = fonts.setdefault(size, ImageFont.load_default(size=size))
        draw.text((x, y), text, fill=(20, 20, 20), font=font, anchor=anchor + "s")
    if angle:
        page = page.rotate(
            angle, resample=Image.Resampling.BICUBIC, fillcolor="white", expand=False
        )
    if noise:
        pixels = np.asarray(page, dtype=np.float32)
        pixels += np.random.default_rng(seed).normal(0, noise, pixels.shape)
        page = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return page


def render_pdf(invoice: Invoice) -> bytes:
    """A one-page PDF (A4, or the receipt's strip) with a real text layer (reportlab,
    Helvetica)."""
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    scale = 72 / 150
    width_pt, height_pt = (side * scale for side in invoice.page)
    pdf = canvas.Canvas(buffer, pagesize=(width_pt, height_pt))
    for x, y, text, size, anchor in _layout(invoice):
        pdf.setFont("Helvetica", size * scale * 0.9)
        draw = {"l": pdf.drawString, "r": pdf.drawRightString, "m": pdf.drawCentredString}[anchor]
        draw(x * scale, height_pt - y * scale, text)
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def _norm(text: str) -> str:
    return " ".join(text.lower().replace(":", " ").split())


def field_scores(truth: list[dict[str, str]], found: list[dict[str, str]]) -> dict[str, float]:
    """Field-level precision, recall and F1: a field counts when its key was found with
    exactly the right value; a found pair for a known field with a wrong value is a false
    positive (keys outside ``FIELDS`` are not scored)."""
    tp = fp = fn = 0
    for want, got in zip(truth, found, strict=True):
        got_norm = {_norm(k): v.strip() for k, v in got.items()}
        for key, value in want.items():
            answer = got_norm.get(_norm(key))
            if answer == value:
                tp += 1
            else:
                fn += 1
                fp += answer is not None
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def table_accuracy(truth: list[list[str]], found: list[list[str]]) -> float:
    """Share of true cells found at the same row and column."""
    cells = sum(len(row) for row in truth)
    right = sum(
        1
        for r, row in enumerate(truth)
        for c, cell in enumerate(row)
        if r < len(found) and c < len(found[r]) and found[r][c].strip() == cell
    )
    return right / cells if cells else 0.0


def cer(truth: str, found: str) -> float:
    """Character error rate: edit distance over the truth's length (whitespace collapsed)."""
    a, b = " ".join(truth.split()), " ".join(found.split())
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1] / max(1, len(a))
