"""Typed values read off a page: dates (to ISO 8601), amounts (a plain decimal and a
currency), identifiers. A value that does not parse as its field's type is not that
field's value, which is what keeps a label from taking the wrong neighbour.

Dates accept ISO (``2024-03-12``), numeric with ``/``, ``.`` or ``-`` and the year
last, and month names (English, German, French, Spanish; ``12 March 2024``,
``Mar 12, 2024``, ``12. März 2024``). A numeric date whose first part can be either the
day or the month is read month-first with ``/`` (US) and day-first with ``.`` or
``-``, unless ``day_first`` says otherwise (a page that prints ``25/03/2024`` anywhere
is day-first: see ``day_first_hint``). A trailing time is ignored.

Amounts accept ``1,234.50``, ``1.234,50``, ``1 234,50``, ``(12.00)`` (negative), and a
currency symbol or ISO code on either side; the last separator followed by exactly two
digits is the decimal point.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass

__all__ = [
    "VALUE_TYPES",
    "Amount",
    "day_first_hint",
    "parse_amount",
    "parse_date",
    "parse_id",
    "parse_value",
]

VALUE_TYPES = ("date", "amount", "id", "text")

_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("january", "jan", "januar", "janvier", "enero", "ene", "jänner"),
            ("february", "feb", "februar", "février", "fevrier", "febrero", "fév", "fev"),
            ("march", "mar", "märz", "maerz", "mars", "marzo", "mär"),
            ("april", "apr", "avril", "abril", "abr", "avr"),
            ("may", "mai", "mayo"),
            ("june", "jun", "juni", "juin", "junio"),
            ("july", "jul", "juli", "juillet", "julio", "juil"),
            ("august", "aug", "août", "aout", "agosto", "ago"),
            ("september", "sep", "sept", "septembre", "septiembre"),
            ("october", "oct", "oktober", "okt", "octobre", "octubre"),
            ("november", "nov", "novembre", "noviembre"),
            ("december", "dec", "dezember", "dez", "décembre", "decembre", "diciembre", "dic"),
        ),
        start=1,
    )
    for name in names
}
_ISO = re.compile(r"(?<!\d)(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?!\d)")
_NUMERIC = re.compile(r"(?<!\d)(\d{1,2})\s?([/.\-])\s?(\d{1,2})\s?[/.\-]\s?(\d{4}|\d{2})(?!\d)")
_DAY_NAME = re.compile(
    r"(?<!\d)(\d{1,2})(?:st|nd|rd|th)?\.?\s*(?:of\s+)?([^\W\d_]{3,10})\.?(?:,\s*|\s+)(\d{4})(?!\d)"
)
_NAME_DAY = re.compile(r"([^\W\d_]{3,10})\.?\s*(\d{1,2})(?:st|nd|rd|th)?(?:,\s*|\s+)(\d{4})(?!\d)")

_CURRENCIES = {
    "$": "USD",
    "us$": "USD",
    "usd": "USD",
    "€": "EUR",
    "eur": "EUR",
    "£": "GBP",
    "gbp": "GBP",
    "¥": "JPY",
    "jpy": "JPY",
    "chf": "CHF",
    "fr.": "CHF",
    "kr": "SEK",
    "sek": "SEK",
    "nok": "NOK",
    "dkk": "DKK",
    "cad": "CAD",
    "aud": "AUD",
    "c$": "CAD",
    "a$": "AUD",
    "inr": "INR",
    "₹": "INR",
    "pln": "PLN",
    "zł": "PLN",
}
_CODE = "|".join(sorted((re.escape(c) for c in _CURRENCIES), key=len, reverse=True))
_NUMBER = r"\(?-?\d{1,3}(?:[.,'\s]\d{3})*(?:[.,]\d{1,2})?\)?|\(?-?\d+(?:[.,]\d{1,2})?\)?"
_AMOUNT = re.compile(
    rf"^(?P<pre>{_CODE})?\s*(?P<num>{_NUMBER})\s*(?P<post>{_CODE})?$", re.IGNORECASE
)


@dataclass(frozen=True)
class Amount:
    value: str  # a plain decimal: "1234.50"
    currency: str | None  # ISO 4217 code when the page shows one


def _date(year: int, month: int, day: int) -> str | None:
    if year < 100:
        year += 2000
    try:
        return dt.date(year, month, day).isoformat()
    except ValueError:
        return None


def _plain(text: str) -> str:
    return unicodedata.normalize("NFC", text).strip().casefold()


def parse_date(text: str, *, day_first: bool | None = None) -> str | None:
    """``text``'s first date as ``YYYY-MM-DD``; None when it holds none."""
    text = _plain(text)
    if m := _ISO.search(text):
        return _date(int(m[1]), int(m[2]), int(m[3]))
    if m := _NUMERIC.search(text):
        a, sep, b, year = int(m[1]), m[2], int(m[3]), int(m[4])
        first_is_day = day_first if day_first is not None else sep != "/"
        if a > 12:
            first_is_day = True
        elif b > 12:
            first_is_day = False
        day, month = (a, b) if first_is_day else (b, a)
        return _date(year, month, day)
    if (m := _DAY_NAME.search(text)) and m[2] in _MONTHS:
        return _date(int(m[3]), _MONTHS[m[2]], int(m[1]))
    if (m := _NAME_DAY.search(text)) and m[1] in _MONTHS:
        return _date(int(m[3]), _MONTHS[m[1]], int(m[2]))
    return None


def day_first_hint(texts: list[str]) -> bool | None:
    """Whether a page writes numeric dates day first: True when one of them can only be
    read so (``25/03/2024``), False when one can only be month first, None: no clue."""
    for text in texts:
        for m in _NUMERIC.finditer(_plain(text)):
            a, b = int(m[1]), int(m[3])
            if a > 12 >= b:
                return True
            if b > 12 >= a:
                return False
    return None


def parse_amount(text: str) -> Amount | None:
    """An amount with an optional currency; None when ``text`` is not one amount."""
    cleaned = _plain(text).replace("\u2212", "-").strip(" .·:")  # leader dots OCR left on
    if text.strip().startswith(".") and not re.search(r"\d[.,]\d", cleaned):
        return None  # ".50" was not "50"
    m = _AMOUNT.match(cleaned)
    if m is None or not any(c.isdigit() for c in m["num"]):
        return None
    number = m["num"]
    negative = (number.startswith("(") and number.endswith(")")) or number.startswith("-")
    digits = number.strip("()-")
    decimal = re.search(r"[.,](\d{1,2})$", digits)
    cents = ""
    if decimal and not re.fullmatch(r"\d{1,3}[.,]\d{3}", digits):
        cents, digits = decimal[1], digits[: decimal.start()]
    whole = re.sub(r"[.,'\s]", "", digits)
    if not whole.isdigit():
        return None
    value = f"{'-' if negative else ''}{int(whole)}.{(cents + '00')[:2]}"
    code = m["pre"] or m["post"]
    return Amount(value, _CURRENCIES.get(code.casefold()) if code else None)


def parse_id(text: str) -> str | None:
    """An identifier: the first token holding a digit (``#``/``No.`` prefixes dropped)."""
    for token in text.split():
        token = token.strip(".,;:()").lstrip("#№").strip()
        if (
            len(token) >= 2
            and any(c.isdigit() for c in token)
            and parse_date(token) is None
            and re.fullmatch(r"[\w][\w\-/.]*", token)
        ):
            return token
    return None


def parse_value(
    kind: str, text: str, *, day_first: bool | None = None
) -> tuple[str, str | None] | None:
    """(normalised value, currency) when ``text`` is a ``kind``; None when it is not."""
    if kind == "date":
        found = parse_date(text, day_first=day_first)
        return (found, None) if found else None
    if kind == "amount":
        amount = parse_amount(text)
        return (amount.value, amount.currency) if amount else None
    if kind == "id":
        ident = parse_id(text)
        return (ident, None) if ident else None
    cleaned = " ".join(text.split())
    return (cleaned, None) if cleaned else None
