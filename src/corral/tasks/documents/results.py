"""What a document request answers: per page its words, lines, pairs, tables, blocks, items
and fields, and the document's own fields; ``readable()`` is the view an LLM gets."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = [
    "BlockOut",
    "BoxOut",
    "DocumentResult",
    "FieldOut",
    "ItemOut",
    "KeyValueOut",
    "LineOut",
    "PageResult",
    "TableOut",
    "WordOut",
]


BoxOut = list[float]


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


class FieldOut(BaseModel):
    name: str
    type: str
    value: str | None = Field(description="As printed; null: not found.")
    normalized: str | None = Field(
        description="ISO 8601 date, plain decimal amount (1234.50), identifier, or text."
    )
    currency: str | None = Field(None, description="ISO 4217 code when the amount shows one.")
    confidence: float
    key: str | None = Field(None, description="The label it was found by (null: no label).")
    key_box: BoxOut | None = None
    boxes: list[BoxOut] = Field(description="Where the value is on the page.")
    page: int | None = Field(None, description="The page it was found on (document level).")


class BlockOut(BaseModel):
    label: str | None = Field(description='The block\'s heading label ("Bill To"), if any.')
    lines: list[str]
    text: str
    box: BoxOut


class ItemOut(BaseModel):
    description: str
    quantity: float | None
    unit_price: str | None
    amount: str | None
    currency: str | None
    box: BoxOut


class PageResult(BaseModel):
    index: int
    width: int
    height: int
    source: str = Field(
        description='"text": the PDF text layer; "ocr": read from pixels; "none": no text '
        "layer, and this expert reads text layers only (options.read: text)."
    )
    seconds: float
    words: list[WordOut] = Field(description="In reading order.")
    lines: list[LineOut] = Field(description="In reading order.")
    key_values: list[KeyValueOut]
    tables: list[TableOut]
    blocks: list[BlockOut] = Field(
        description="Stacked lines that belong together (a seller's name and address, a "
        "Bill To block), top to bottom."
    )
    items: list[ItemOut] = Field(description="Line items from tables and receipt lines.")
    summary: list[KeyValueOut] = Field(
        description="The summary block's pairs (subtotal, tax, total, cash, change)."
    )
    fields: list[FieldOut] | None = Field(None, description="The requested fields, if any.")
    text: str


_READABLE_TEXT_CHARS = 2000  # the text a tool result carries; the pairs and tables go first


class DocumentResult(BaseModel):
    pages: list[PageResult]
    text: str = Field(
        description="Every page's text in reading order; pages apart by a blank line."
    )
    fields: list[FieldOut] | None = Field(
        None, description="Each requested field from the page where it was found most surely."
    )

    def readable(self) -> dict[str, Any]:
        """What an LLM calling this expert as a tool reads: the text, pairs, tables and
        fields, without the word boxes (those alone outgrow a small model's context)."""
        return {
            "pages": [
                {
                    "index": page.index,
                    "key_values": [{"key": kv.key, "value": kv.value} for kv in page.key_values],
                    "tables": [table.rows for table in page.tables],
                }
                for page in self.pages
            ],
            "fields": None
            if self.fields is None
            else [
                {"name": f.name, "value": f.value, "normalized": f.normalized} for f in self.fields
            ],
            "text": self.text[:_READABLE_TEXT_CHARS],
        }
