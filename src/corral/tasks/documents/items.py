"""Line items: what was bought, how many, for how much, from tables and from receipt
lines.

* **Tables**: a header row (no amounts in it) names the columns: description / item /
  service / product, qty / quantity / units, unit price / rate / price, amount /
  total / line total. Without a header, columns are told by content: the text cell is
  the description, a small whole number the quantity, the last amount the line's
  amount and an amount before it the unit price.
* **Receipt lines** outside tables: text on the left and an amount at the right
  (``2 x Coffee    7.00``, ``Croissant    3.20``, across a dotted leader), where the
  text is neither a label nor a summary line (Subtotal, Tax, Total, Cash, Change are
  the summary block, never items). ``2 x Coffee``, ``Coffee x2`` and ``2 Coffee`` give
  the quantity; otherwise it is 1. Two or more such lines in a run also become a table
  (description, quantity, amount).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from corral.tasks.documents.layout import Box, Layout, Line, Table, is_summary, label_words, union
from corral.tasks.documents.values import parse_amount

__all__ = ["Item", "find_items", "item_tables"]

_HEADERS = {
    "description": (
        "description",
        "item",
        "items",
        "service",
        "product",
        "article",
        "details",
        "beschreibung",
        "artikel",
        "désignation",
        "descripción",
    ),
    "quantity": ("qty", "quantity", "units", "qté", "menge", "anzahl", "cantidad", "pcs", "hours"),
    "unit_price": (
        "unit price",
        "rate",
        "price",
        "unit cost",
        "each",
        "einzelpreis",
        "prix unitaire",
        "precio",
    ),
    "amount": ("amount", "total", "line total", "sum", "betrag", "gesamt", "montant", "importe"),
}
_TIMES = "x\u00d7*"  # x, the multiplication sign, *
_QTY_FIRST = re.compile(rf"^(\d{{1,4}})\s*(?:[{_TIMES}@]\s*|\s+)(\D.*)$", re.IGNORECASE)
_QTY_LAST = re.compile(rf"^(.*\D)\s+[{_TIMES}]\s*(\d{{1,4}})$", re.IGNORECASE)


@dataclass(frozen=True)
class Item:
    description: str
    quantity: float | None
    unit_price: str | None  # plain decimals, as ``values.parse_amount`` gives them
    amount: str | None
    currency: str | None
    box: Box


def _quantity(text: str) -> float | None:
    cleaned = text.strip().replace(",", ".")
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return value if 0 < value < 100_000 and len(cleaned) <= 8 else None


def _role(header: str) -> str | None:
    text = " ".join(re.sub(r"[^\w\s]", " ", header.casefold()).split())
    for role, names in _HEADERS.items():
        if text in names:
            return role
    return None


def _from_table(table: Table) -> list[Item]:
    rows = table.rows
    header = rows[0] if rows and not any(parse_amount(c) for c in rows[0] if c) else None
    roles = [_role(c) for c in header] if header else []

    def cell(role: str) -> int | None:
        return roles.index(role) if role in roles else None

    items = []
    for row in rows[1:] if header else rows:
        amounts = [
            (i, parse_amount(c)) for i, c in enumerate(row) if c and any(ch.isdigit() for ch in c)
        ]
        money = [(i, a) for i, a in amounts if a is not None and re.search(r"[.,]\d{2}\b", row[i])]
        d = cell("description")
        if d is None:
            d = next((i for i, c in enumerate(row) if any(ch.isalpha() for ch in c)), None)
        if d is None or not row[d].strip():
            continue
        q = cell("quantity")
        if q is None:
            q = next(
                (i for i, c in enumerate(row) if i != d and re.fullmatch(r"\d{1,4}", c.strip())),
                None,
            )
        a = cell("amount")
        amount = parse_amount(row[a]) if a is not None else (money[-1][1] if money else None)
        p = cell("unit_price")
        price = (
            parse_amount(row[p]) if p is not None else (money[-2][1] if len(money) >= 2 else None)
        )
        shown = amount or price
        items.append(
            Item(
                " ".join(row[d].split()),
                _quantity(row[q]) if q is not None else None,
                price.value if price else None,
                amount.value if amount else None,
                shown.currency if shown else None,
                table.box,
            )
        )
    return items


def _item_line(line: Line, labels: frozenset[str]) -> Item | None:
    if len(line.segments) < 2 or is_summary(line):
        return None
    first, last = line.segments[0], line.segments[-1]
    if label_words(first, labels) or any(w.text.endswith(":") for w in first.words):
        return None
    amount = parse_amount(last.text)
    if amount is None or not re.search(r"[.,]\d{2}$", last.text.strip()):
        return None
    text = " ".join(s.text for s in line.segments[:-1])
    if not any(c.isalpha() for c in text):
        return None
    quantity: float | None = 1.0
    if m := _QTY_FIRST.match(text):
        quantity, text = float(m[1]), m[2]
    elif m := _QTY_LAST.match(text):
        text, quantity = m[1], float(m[2])
    box = union([*(s.box for s in line.segments)])
    return Item(" ".join(text.split()), quantity, None, amount.value, amount.currency, box)


def find_items(layout: Layout) -> list[Item]:
    """Every line item on the page, tables first, then receipt lines."""
    items = [item for table in layout.tables for item in _from_table(table)]
    for i, line in enumerate(layout.lines):
        if i not in layout.table_lines:
            item = _item_line(line, layout.labels)
            if item is not None:
                items.append(item)
    return items


def item_tables(layout: Layout) -> list[Table]:
    """Runs of two or more receipt item lines as tables (description, quantity, amount)."""
    tables: list[Table] = []
    run: list[Item] = []

    def close() -> None:
        if len(run) >= 2:
            rows = [
                [it.description, f"{it.quantity:g}" if it.quantity else "", it.amount or ""]
                for it in run
            ]
            tables.append(Table(rows, union(it.box for it in run)))
        run.clear()

    for i, line in enumerate(layout.lines):
        item = None if i in layout.table_lines else _item_line(line, layout.labels)
        if item is None:
            close()
        else:
            run.append(item)
    close()
    return tables
