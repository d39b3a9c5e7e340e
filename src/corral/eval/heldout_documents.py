"""Held-out documents: invoices, receipts and forms drawn by a generator that the layout
rules are *not* written against, to measure how extraction generalises.

``corral.eval.invoices`` and the layout rules were written together, so its scores are
regression numbers. This module is the second set: its layouts follow common real-world
conventions rather than corral's rules, and every document draws its labels, date and
amount formats and currency at random, so no single string is a template to tune for.

* ``two_column`` (A4 invoice): the seller's name (large, **no label**) and address top
  left; on the right an ``INVOICE`` title and its own label/value pairs, labels left and
  values right-aligned at the margin: the number as ``No.`` / ``#`` / ``Invoice #`` /
  ``Invoice No.`` / ``Reference``, the date as ``Date of issue`` / ``Issue date`` /
  ``Invoice date`` / ``Dated``, the due date as ``Due date`` / ``Payment due`` /
  ``Due by`` / ``Pay by``; a ``Bill To`` / ``Billed to`` / ``Customer`` block under the
  seller; an item table (headers vary: Description / Item / Service; Qty / Quantity /
  Units; Unit price / Rate / Price; Amount / Line total); a summary whose labels sit
  left of values at the right margin: ``Subtotal`` / ``Net``, ``Tax (8%)`` /
  ``VAT 20%`` / ``Sales tax``, ``Total`` / ``Total due`` / ``Amount due`` /
  ``Balance due``; a payment-terms footer.
* ``till`` (receipt, 80 mm strip, monospace): centred shop name and address, a
  ``Receipt #`` / ``Check #`` / ``Order #`` line, a date with a time and **no label**
  (or ``Date:``), items as ``2 x Coffee    7.00`` or ``Croissant    3.20`` (qty 1),
  amounts right-aligned; ``SUBTOTAL ........ 12.50``, ``TAX 8% ..... 1.00`` and
  ``TOTAL ........ 13.50`` with dotted leaders (sometimes without spaces around the
  dots), then ``CASH`` and ``CHANGE`` lines (amounts that are not the total).
* ``boxed`` (A4 form): a title, then boxes drawn as lines, each with a small label in
  its top-left corner and the value inside below it: ``Supplier`` / ``From`` / ``Seller``
  (name and address), ``Invoice number`` / ``Document no.`` / ``Invoice #``,
  ``Date of issue`` / ``Date``, ``Due date`` / ``Payable by``; an item grid drawn with
  lines; ``Net amount`` / ``Subtotal``, ``VAT`` / ``Tax``, ``Amount due`` / ``Total``
  boxes at the bottom right.

Dates are written as ``12 March 2024``, ``Mar 12, 2024``, ``03/12/2024`` (US, with
dollars), ``12.03.2024`` (with euros) or ``2024-03-12``; amounts as ``$1,234.50``,
``1,234.50 EUR``, ``€1.234,50`` or ``£1,234.50``. The truth is normalised: ISO 8601
dates, amounts as plain decimals (``1234.50``), identifiers and names as printed.

Pages render (``heldout_render``) as PDFs with a text layer (reportlab: Times,
Helvetica or Courier; boxes as drawn lines) or as 150-dpi scans (Pillow, a TrueType
font when one is installed; rotation, Gaussian noise, a slight blur).
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field

__all__ = [
    "HELDOUT_LAYOUTS",
    "HeldoutDocument",
    "field_counts",
    "item_counts",
    "make_document",
]

HELDOUT_LAYOUTS = ("two_column", "till", "boxed")
A4 = (1240, 1754)  # pixels at 150 dpi

# x, y (baseline), text, size (px), anchor ('l', 'r', 'm'), bold
Text = tuple[float, float, str, int, str, bool]
Rect = tuple[float, float, float, float]

_SELLERS = (
    "Brightwater Analytics",
    "Keller & Sons GmbH",
    "Oakridge Print Co.",
    "Nordlys Design AS",
    "Pinecrest Legal LLP",
    "Marlow Engineering",
    "Bluefin Logistics",
    "Saffron Studio",
)
_CUSTOMERS = ("Initrode Ltd", "Vandelay Industries", "Hooli Europe BV", "Massive Dynamic")
_STREETS = ("48 Harbour Road", "Hauptstrasse 17", "9 Elm Court", "221 Bay Avenue")
_CITIES = ("Bristol BS1 4QA", "80331 Munich", "Portland, OR 97205", "0150 Oslo")
_SERVICES = (
    "Website redesign",
    "Quarterly audit",
    "Brochure printing",
    "Freight handling",
    "Legal consultation",
    "Logo package",
    "Server maintenance",
    "Copywriting",
    "Data cleansing",
    "Site survey",
)
_SHOPS = ("Corner Bean Cafe", "The Daily Loaf", "Harbour Deli", "Green Leaf Market")
_GOODS = (
    "Coffee",
    "Latte",
    "Croissant",
    "Bagel",
    "Orange juice",
    "Muffin",
    "Sandwich",
    "Green tea",
    "Water",
    "Cookie",
)
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


@dataclass(frozen=True)
class HeldoutDocument:
    layout: str
    schema: str  # the built-in field schema a reader should ask for: invoice or receipt
    size: tuple[int, int]
    texts: tuple[Text, ...]
    rects: tuple[Rect, ...]
    fields: dict[str, str]  # field name -> normalised truth
    items: tuple[tuple[str, int, str], ...]  # description, quantity, amount (normalised)
    types: dict[str, str] = field(default_factory=dict)  # field name -> date|amount|id|text


@dataclass(frozen=True)
class _Style:
    currency: str  # "$", "EUR", "€", "£"
    date_format: str

    def money(self, value: float) -> str:
        if self.currency == "€":
            whole, cents = f"{value:,.2f}".split(".")
            return "€" + whole.replace(",", ".") + "," + cents
        if self.currency == "EUR":
            return f"{value:,.2f} EUR"
        return f"{self.currency}{value:,.2f}"

    def date(self, day: dt.date) -> str:
        if self.date_format == "long":
            return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"
        if self.date_format == "us-short":
            return f"{_MONTHS[day.month - 1][:3]} {day.day}, {day.year}"
        if self.date_format == "us":
            return day.strftime("%m/%d/%Y")
        if self.date_format == "dotted":
            return day.strftime("%d.%m.%Y")
        return day.isoformat()


def _style(rng: random.Random) -> _Style:
    currency = rng.choice(("$", "EUR", "€", "£"))
    formats = {"$": ("us", "us-short", "iso"), "€": ("dotted", "long", "iso")}
    return _Style(currency, rng.choice(formats.get(currency, ("long", "us-short", "iso"))))


def _money(value: float) -> str:
    return f"{value:.2f}"


def _invoice_truth(
    seller: str,
    number: str,
    issued: dt.date,
    due: dt.date,
    subtotal: float,
    tax: float,
    total: float,
) -> dict[str, str]:
    """The fields an invoice layout is scored on, as the evaluation compares them."""
    return {
        "seller": seller,
        "invoice_number": number,
        "date": issued.isoformat(),
        "due_date": due.isoformat(),
        "subtotal": _money(subtotal),
        "tax": _money(tax),
        "total": _money(total),
    }


def _dates(rng: random.Random) -> tuple[dt.date, dt.date]:
    issued = dt.date(2024, 1, 1) + dt.timedelta(days=rng.randint(0, 600))
    return issued, issued + dt.timedelta(days=rng.choice((14, 30, 45)))


def _lines(
    rng: random.Random, names: tuple[str, ...], low: float, high: float, n: int
) -> list[tuple[str, int, float]]:
    return [
        (name, rng.randint(1, 9), round(rng.uniform(low, high), 2)) for name in rng.sample(names, n)
    ]


def make_document(rng: random.Random, layout: str) -> HeldoutDocument:
    """One document of ``layout`` (see the module docs), drawn from ``rng``."""
    draw = {"two_column": _two_column, "till": _till, "boxed": _boxed}
    if layout not in draw:
        raise ValueError(f"layout is {layout!r}; use one of {', '.join(HELDOUT_LAYOUTS)}")
    return draw[layout](rng)


_INVOICE_TYPES = {
    "seller": "text",
    "invoice_number": "id",
    "date": "date",
    "due_date": "date",
    "subtotal": "amount",
    "tax": "amount",
    "total": "amount",
}


def _two_column(rng: random.Random) -> HeldoutDocument:
    style, (issued, due) = _style(rng), _dates(rng)
    seller, number = (
        rng.choice(_SELLERS),
        f"{rng.choice(('INV', 'A', '2024'))}-{rng.randint(10, 99999)}",
    )
    items = _lines(rng, _SERVICES, 40, 2400, rng.randint(2, 5))
    rate = rng.choice((5, 7, 8, 10, 19, 20))
    subtotal = round(sum(q * p for _, q, p in items), 2)
    tax = round(subtotal * rate / 100, 2)
    total = round(subtotal + tax, 2)
    left, label_x, right = 90, 740, 1150
    t: list[Text] = [
        (left, 120, seller, 34, "l", True),
        (left, 160, rng.choice(_STREETS), 20, "l", False),
        (left, 188, rng.choice(_CITIES), 20, "l", False),
        (
            left,
            216,
            f"Tel. +44 20 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}",
            20,
            "l",
            False,
        ),
        (right, 120, rng.choice(("INVOICE", "Invoice", "TAX INVOICE")), 40, "r", True),
    ]
    header = (
        (rng.choice(("No.", "#", "Invoice #", "Invoice No.", "Reference")), number),
        (rng.choice(("Date of issue", "Issue date", "Invoice date", "Dated")), style.date(issued)),
        (rng.choice(("Due date", "Payment due", "Due by", "Pay by")), style.date(due)),
    )
    for i, (label, value) in enumerate(header):
        t += [
            (label_x, 180 + 34 * i, label, 21, "l", True),
            (right, 180 + 34 * i, value, 21, "r", False),
        ]
    t += [(left, 330, rng.choice(("Bill To", "Billed to", "Customer")), 20, "l", True)]
    t += [
        (left, 362, rng.choice(_CUSTOMERS), 22, "l", False),
        (left, 390, rng.choice(_STREETS), 20, "l", False),
    ]
    heads = (
        rng.choice(("Description", "Item", "Service")),
        rng.choice(("Qty", "Quantity", "Units")),
        rng.choice(("Unit price", "Rate", "Price")),
        rng.choice(("Amount", "Line total")),
    )
    columns = ((left, "l"), (640, "r"), (870, "r"), (right, "r"))
    y = 500
    for (x, anchor), head in zip(columns, heads, strict=True):
        t.append((x, y, head, 20, anchor, True))
    for name, qty, price in items:
        y += 40
        cells = (name, str(qty), style.money(price), style.money(qty * price))
        t += [
            (x, y, cell, 20, anchor, False)
            for (x, anchor), cell in zip(columns, cells, strict=True)
        ]
    y += 80
    summary = (
        (rng.choice(("Subtotal", "Net")), subtotal),
        (rng.choice((f"Tax ({rate}%)", f"VAT {rate}%", "Sales tax")), tax),
        (rng.choice(("Total", "Total due", "Amount due", "Balance due")), total),
    )
    for i, (name, figure) in enumerate(summary):
        t += [
            (label_x, y + 36 * i, name, 21, "l", i == 2),
            (right, y + 36 * i, style.money(figure), 21, "r", i == 2),
        ]
    t.append((left, y + 200, f"Payment terms: {(due - issued).days} days net", 18, "l", False))
    truth = _invoice_truth(seller, number, issued, due, subtotal, tax, total)
    return HeldoutDocument(
        "two_column",
        "invoice",
        A4,
        tuple(t),
        (),
        truth,
        tuple((n, q, _money(q * p)) for n, q, p in items),
        _INVOICE_TYPES,
    )


def _till(rng: random.Random) -> HeldoutDocument:
    style = _Style(rng.choice(("$", "£")), rng.choice(("us", "iso")))
    issued, _ = _dates(rng)
    shop = rng.choice(_SHOPS)
    items = _lines(rng, _GOODS, 1.2, 9.5, rng.randint(2, 6))
    rate = rng.choice((5, 8, 10))
    subtotal = round(sum(q * p for _, q, p in items), 2)
    tax = round(subtotal * rate / 100, 2)
    total = round(subtotal + tax, 2)
    cash = float(int(total) + rng.choice((1, 5, 10)))
    width, left, right, middle, cols = 560, 30, 530, 280, 32
    upper = rng.random() < 0.5
    number = f"{rng.randint(1, 9999):04d}"
    t: list[Text] = [
        (middle, 70, shop.upper() if upper else shop, 28, "m", True),
        (middle, 104, rng.choice(_STREETS), 18, "m", False),
        (middle, 130, f"Tel {rng.randint(100, 999)}-{rng.randint(1000, 9999)}", 18, "m", False),
        (left, 180, f"{rng.choice(('Receipt #', 'Check #', 'Order #'))} {number}", 18, "l", False),
    ]
    when = f"{style.date(issued)} {rng.randint(7, 21):02d}:{rng.randint(0, 59):02d}"
    t.append((left, 206, f"Date: {when}" if rng.random() < 0.5 else when, 18, "l", False))
    y = 250
    t.append((left, y, "-" * cols, 18, "l", False))
    for name, qty, price in items:
        y += 30
        text = f"{qty} x {name}" if qty > 1 else name
        t += [(left, y, text, 18, "l", False), (right, y, _money(qty * price), 18, "r", False)]
    y += 30
    t.append((left, y, "-" * cols, 18, "l", False))
    tight = rng.random() < 0.3  # dots run into label and value: "TOTAL.....13.50"
    for label, value in (
        ("SUBTOTAL", subtotal),
        (f"TAX {rate}%", tax),
        ("TOTAL", total),
        ("CASH", cash),
        ("CHANGE", cash - total),
    ):
        y += 32
        amount = _money(value)
        dots = "." * max(3, cols - len(label) - len(amount) - (0 if tight else 2))
        line = f"{label}{dots}{amount}" if tight else f"{label} {dots} {amount}"
        t.append((left, y, line, 18, "l", label == "TOTAL"))
    t.append((middle, y + 60, rng.choice(("THANK YOU", "Thanks for visiting!")), 18, "m", False))
    truth = {
        "seller": shop.upper() if upper else shop,
        "receipt_number": number,
        "date": issued.isoformat(),
        "subtotal": _money(subtotal),
        "tax": _money(tax),
        "total": _money(total),
    }
    types = {
        "seller": "text",
        "receipt_number": "id",
        "date": "date",
        "subtotal": "amount",
        "tax": "amount",
        "total": "amount",
    }
    return HeldoutDocument(
        "till",
        "receipt",
        (width, y + 110),
        tuple(t),
        (),
        truth,
        tuple((n, q, _money(q * p)) for n, q, p in items),
        types,
    )


def _boxed(rng: random.Random) -> HeldoutDocument:
    style, (issued, due) = _style(rng), _dates(rng)
    seller, number = rng.choice(_SELLERS), f"{rng.randint(100000, 999999)}"
    items = _lines(rng, _SERVICES, 60, 1800, rng.randint(2, 4))
    subtotal = round(sum(q * p for _, q, p in items), 2)
    tax = round(subtotal * 0.2, 2)
    total = round(subtotal + tax, 2)
    t: list[Text] = [(620, 110, rng.choice(("INVOICE", "Tax Invoice")), 36, "m", True)]
    r: list[Rect] = []

    def box(x0: float, y0: float, x1: float, y1: float, label: str, *values: str) -> None:
        r.append((x0, y0, x1, y1))
        t.append((x0 + 10, y0 + 22, label, 15, "l", False))
        t.extend(
            (x0 + 14, y0 + 60 + 30 * i, v, 22 if i == 0 else 19, "l", i == 0)
            for i, v in enumerate(values)
        )

    box(
        80,
        160,
        640,
        320,
        rng.choice(("Supplier", "From", "Seller")),
        seller,
        rng.choice(_STREETS),
        rng.choice(_CITIES),
    )
    box(640, 160, 1160, 240, rng.choice(("Invoice number", "Document no.", "Invoice #")), number)
    box(640, 240, 900, 320, rng.choice(("Date of issue", "Date")), style.date(issued))
    box(900, 240, 1160, 320, rng.choice(("Due date", "Payable by")), style.date(due))
    y, columns = 380, ((80, 640), (640, 780), (780, 960), (960, 1160))
    rows = [("Description", "Qty", "Price", "Amount")] + [
        (n, str(q), style.money(p), style.money(q * p)) for n, q, p in items
    ]
    for cells in rows:
        for (x0, x1), cell in zip(columns, cells, strict=True):
            r.append((x0, y, x1, y + 44))
            t.append((x0 + 12, y + 30, cell, 19, "l", cells is rows[0]))
        y += 44
    y += 40
    for label, value in (
        (rng.choice(("Net amount", "Subtotal")), subtotal),
        (rng.choice(("VAT", "Tax")), tax),
        (rng.choice(("Amount due", "Total")), total),
    ):
        box(760, y, 1160, y + 80, label, style.money(value))
        y += 80
    truth = _invoice_truth(seller, number, issued, due, subtotal, tax, total)
    return HeldoutDocument(
        "boxed",
        "invoice",
        A4,
        tuple(t),
        tuple(r),
        truth,
        tuple((n, q, _money(q * p)) for n, q, p in items),
        _INVOICE_TYPES,
    )


def _same(kind: str, truth: str, found: str) -> bool:
    if kind in ("text", "id"):
        return " ".join(truth.casefold().split()) == " ".join(found.casefold().split())
    return truth == found


def field_counts(doc: HeldoutDocument, found: dict[str, str | None]) -> tuple[int, int, int]:
    """True positives, false positives, false negatives of ``found`` (field name ->
    normalised value, None: not found) against the truth; a wrong value is both a false
    positive and a false negative."""
    tp = fp = fn = 0
    for name, truth in doc.fields.items():
        answer = found.get(name)
        if answer is not None and _same(doc.types.get(name, "text"), truth, answer):
            tp += 1
        else:
            fn += 1
            fp += answer is not None
    return tp, fp, fn


def item_counts(doc: HeldoutDocument, found: list[tuple[str, int, str]]) -> tuple[int, int, int]:
    """Line items matched as (description, quantity, amount), case-insensitive."""
    want = [(d.casefold(), q, a) for d, q, a in doc.items]
    tp = 0
    for d, q, a in found:
        key = (" ".join(d.casefold().split()), q, a)
        if key in want:
            want.remove(key)
            tp += 1
    return tp, len(found) - tp, len(want)
