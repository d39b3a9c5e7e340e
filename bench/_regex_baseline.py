"""The baseline corral's layout reading must beat: regular expressions over the page's
flat ``text`` (reading order), as a user would write them without any layout.

To make the comparison about layout, not vocabulary, the regexes get what corral gets:
the same field labels (``field_schemas``), the same longest-label rule ("Due date" is
not "date"), a rate after a label ("Tax (8%)"), leader dots between label and value,
and the same value parsers (``values``). A field is the first line where a label is
followed by a value of its type; the seller is the first line (a trailing title such
as "INVOICE" cut off); a date without a label is the first date in the text. Items are
lines ``[qty x] description [....] amount`` (receipts) or ``description qty price
amount`` (tables), summary lines excluded.
"""

from __future__ import annotations

import re

from corral.tasks.documents.field_schemas import BUILTIN_FIELDS, SCHEMAS, SUMMARY_LABELS, TITLES
from corral.tasks.documents.values import day_first_hint, parse_value

__all__ = ["regex_fields", "regex_items"]

_DATE = (
    r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[/.\-]\d{1,2}[/.\-]\d{2,4}"
    r"|\d{1,2}\.?\s+[A-Za-zäéû]{3,10}\.?,?\s+\d{4}|[A-Za-zäéû]{3,10}\.?\s+\d{1,2},?\s*\d{4}"
)
_AMOUNT = r"(?:[$€£]\s?)?-?\d[\d.,' ]*\d(?:\s?(?:EUR|USD|GBP|CHF))?|(?:[$€£]\s?)?\d"
_ID = r"#?\s?[A-Za-z0-9][\w\-/.]*\d[\w\-/.]*"
_VALUES = {"date": _DATE, "amount": _AMOUNT, "id": _ID, "text": r".+"}
_GAP = r"\s*(?:\(?\d{1,2}(?:[.,]\d+)?\s?%\)?)?\s*[:#.]*[\s.·]*"
_MONEY = r"(?:[$€£]\s?)?\d[\d.,]*[.,]\d{2}(?:\s?(?:EUR|USD|GBP))?"
_RECEIPT_ITEM = re.compile(
    rf"^(?:(\d+)\s*[x\u00d7]\s+)?([A-Za-z][A-Za-z '&-]*?)\s+(?:[.·]{{2,}}\s*)?({_MONEY})$"
)
_TABLE_ITEM = re.compile(rf"^([A-Za-z][\w '&.-]*?)\s+(\d+)\s+({_MONEY})\s+({_MONEY})$")


def _label_pattern(labels: list[str]) -> str:
    words = sorted(labels, key=len, reverse=True)
    return "|".join(r"\s+".join(re.escape(w) for w in label.split()) for label in words)


def _label_spans(line: str, names: tuple[str, ...]) -> list[tuple[int, int, str]]:
    """(start, end, field) of every label on the line, overlaps resolved longest first."""
    spans = []
    for name in names:
        pattern = rf"(?<![\w#])(?:{_label_pattern(list(BUILTIN_FIELDS[name].labels))})(?![\w])"
        spans += [(m.start(), m.end(), name) for m in re.finditer(pattern, line, re.IGNORECASE)]
    spans.sort(key=lambda s: (s[0] - s[1], s[0]))
    kept: list[tuple[int, int, str]] = []
    for span in spans:
        if all(span[1] <= k[0] or span[0] >= k[1] for k in kept):
            kept.append(span)
    return sorted(kept)


def _seller(lines: list[str]) -> str | None:
    for line in lines:
        text = line.strip()
        if text.casefold() in TITLES:
            continue
        for title in sorted(TITLES, key=len, reverse=True):
            text = re.sub(rf"\s+{re.escape(title)}$", "", text, flags=re.IGNORECASE)
        if text and text.casefold() not in TITLES:
            return text
    return None


def regex_fields(text: str, schema: str) -> dict[str, str | None]:
    """Field name -> normalised value (None: no match) for a built-in schema."""
    lines = [line for line in text.splitlines() if line.strip()]
    day_first = day_first_hint(lines)
    names = SCHEMAS[schema]
    found: dict[str, str | None] = {name: None for name in names}
    found["seller"] = _seller(lines)
    for line in lines:
        for start, end, name in _label_spans(line, tuple(n for n in names if n != "seller")):
            del start
            spec = BUILTIN_FIELDS[name]
            m = re.match(rf"{_GAP}({_VALUES[spec.type]})", line[end:], re.IGNORECASE)
            if found[name] is None and m:
                parsed = parse_value(spec.type, m[1].strip(), day_first=day_first)
                if parsed is not None:
                    found[name] = parsed[0]
    if "date" in found and found["date"] is None:
        for m in re.finditer(_DATE, text):
            parsed = parse_value("date", m[0], day_first=day_first)
            if parsed is not None and parsed[0] not in found.values():
                found["date"] = parsed[0]
                break
    return found


_SUMMARY = re.compile(rf"^(?:{_label_pattern(list(SUMMARY_LABELS))})\b", re.IGNORECASE)


def regex_items(text: str) -> list[tuple[str, int, str]]:
    """(description, quantity, amount) of each item line in the text."""
    items = []
    for line in text.splitlines():
        line = line.strip()
        if _SUMMARY.match(line):
            continue
        if m := _TABLE_ITEM.match(line):
            amount = parse_value("amount", m[4])
            if amount:
                items.append((m[1], int(m[2]), amount[0]))
        elif m := _RECEIPT_ITEM.match(line):
            amount = parse_value("amount", m[3])
            if amount:
                items.append((m[2], int(m[1] or 1), amount[0]))
    return items
