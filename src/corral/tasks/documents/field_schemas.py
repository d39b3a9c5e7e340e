"""Built-in document fields: each with its value type and the labels it goes by
(English first, then German, French and Spanish where the word is cheap to list).

A request names fields (``{name, type, labels}``) or a schema (``invoice``,
``receipt``); a field whose name is built in takes its type and labels from here unless
the request gives its own. Labels are matched after ``layout.normalise_label``
(lower case, punctuation but ``#`` dropped), so ``Invoice No.`` is ``invoice no``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BUILTIN_FIELDS",
    "SCHEMAS",
    "SUMMARY_FIELDS",
    "SUMMARY_LABELS",
    "TITLES",
    "FieldSpec",
]


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str  # date | amount | id | text
    labels: tuple[str, ...]
    fallback: str | None = None  # how to find it without a label: header_block, first_date


_NUMBER = (
    "invoice number", "invoice no", "invoice #", "invoice nr", "invoice id", "inv no",
    "inv #", "no", "nr", "number", "#", "reference", "ref no", "document no",
    "document number", "document #", "bill no", "bill number", "rechnungsnummer",
    "rechnung nr", "belegnummer", "numéro de facture", "facture n", "n de facture",
    "número de factura", "factura no", "factura n",
)  # fmt: skip
_RECEIPT_NUMBER = (
    "receipt #", "receipt no", "receipt number", "check #", "check no", "order #",
    "order no", "order number", "transaction #", "transaction no", "trans #", "ticket #",
    "ticket no", "bon nr", "beleg nr", "no", "#",
)  # fmt: skip
_DATE = (
    "date", "invoice date", "date of issue", "issue date", "issued", "issued on", "dated",
    "receipt date", "order date", "datum", "rechnungsdatum", "belegdatum",
    "date de facture", "date d émission", "fecha", "fecha de emisión",
)  # fmt: skip
_DUE = (
    "due date", "due", "due by", "due on", "payment due", "pay by", "payable by",
    "payment date", "fällig", "fällig am", "fälligkeitsdatum", "zahlbar bis", "échéance",
    "date d échéance", "vencimiento", "fecha de vencimiento",
)  # fmt: skip
_SUBTOTAL = (
    "subtotal", "sub total", "net", "net amount", "net total", "total net", "total excl tax",
    "zwischensumme", "nettobetrag", "netto", "sous total", "total ht", "base imponible",
)  # fmt: skip
_TAX = (
    "tax", "vat", "sales tax", "gst", "hst", "mwst", "ust", "umsatzsteuer", "tva", "iva",
    "tax amount", "vat amount",
)  # fmt: skip
_TOTAL = (
    "total", "total due", "amount due", "balance due", "grand total", "total amount",
    "amount payable", "total payable", "total to pay", "to pay", "invoice total",
    "total incl tax", "gesamt", "gesamtbetrag", "summe", "rechnungsbetrag", "total ttc",
    "montant total", "importe total", "total a pagar",
)  # fmt: skip
_SELLER = (
    "seller", "supplier", "from", "vendor", "sold by", "issued by", "merchant", "company",
    "lieferant", "verkäufer", "fournisseur", "vendeur", "proveedor", "vendedor",
)  # fmt: skip
_CUSTOMER = (
    "bill to", "billed to", "invoice to", "customer", "client", "sold to", "buyer",
    "kunde", "rechnungsempfänger", "cliente", "facturé à",
)  # fmt: skip

BUILTIN_FIELDS: dict[str, FieldSpec] = {
    spec.name: spec
    for spec in (
        FieldSpec("seller", "text", _SELLER, "header_block"),
        FieldSpec("customer", "text", _CUSTOMER),
        FieldSpec("invoice_number", "id", _NUMBER),
        FieldSpec("receipt_number", "id", _RECEIPT_NUMBER),
        FieldSpec("date", "date", _DATE, "first_date"),
        FieldSpec("due_date", "date", _DUE),
        FieldSpec("subtotal", "amount", _SUBTOTAL),
        FieldSpec("tax", "amount", _TAX),
        FieldSpec("total", "amount", _TOTAL),
    )
}

SCHEMAS: dict[str, tuple[str, ...]] = {
    "invoice": (
        "seller", "customer", "invoice_number", "date", "due_date", "subtotal", "tax", "total",
    ),
    "receipt": ("seller", "receipt_number", "date", "subtotal", "tax", "total"),
}  # fmt: skip

# labels of a receipt's or invoice's summary block: never an item line or a table row
SUMMARY_FIELDS = ("subtotal", "tax", "total")
SUMMARY_LABELS: tuple[str, ...] = (
    *(label for name in SUMMARY_FIELDS for label in BUILTIN_FIELDS[name].labels),
    "cash", "change", "card", "tip", "tendered", "paid", "visa", "mastercard", "balance",
    "discount", "rounding",
)  # fmt: skip

# a document's title, never its seller's name
TITLES = frozenset(
    {"invoice", "tax invoice", "receipt", "bill", "statement", "quote", "quotation",
     "credit note", "proforma invoice", "sales receipt", "rechnung", "quittung", "facture",
     "factura", "recibo", "order", "delivery note"}
)  # fmt: skip
