"""Fitting a LayoutLMv3 token-classification head on a user's own labelled pages, so
one specialised document model can be swapped in the way anomaly detectors and GNNs are.

A labelled page is a document (base64 or a ``file_id``) and the key/value pairs a reader
should find on it (``{key: "Invoice No.", value: "INV-7"}``): corral reads the page's
words as for extraction (text layer or OCR) and tags the words that spell each key
``B-KEY``/``I-KEY`` and each value ``B-VALUE``/``I-VALUE`` (the value searched after its
key first), everything else ``O``. The encoder stays frozen: each word's first sub-token
vector is computed once, and a linear head (class-weighted cross-entropy, Adam) is
trained on those vectors, which takes seconds on a CPU. The head is stored in the
artifact store as a new version of ``name`` (kind ``documents``: ``weight``, ``bias``
and the tags; no pickle), and ``POST /v1/documents/extract`` with ``fitted: name``
tags words with it instead of the checkpoint's own head.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from corral.config import Task
from corral.experts.operation import Operation
from corral.ownership import OwnedName
from corral.tasks.documents.layout import Word, normalise_label

__all__ = [
    "DOCUMENT_FIT",
    "KIND",
    "TAGS",
    "DocumentFitInput",
    "DocumentFitResult",
    "LabelledPage",
    "LabelledPair",
    "fit_head",
    "tag_words",
]

KIND = "documents"
TAGS = ("O", "B-KEY", "I-KEY", "B-VALUE", "I-VALUE")


class LabelledPair(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=200)
    value: str = Field(min_length=1, max_length=500)


class LabelledPage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    document: str | None = Field(None, description="The PDF or image as base64.")
    file_id: str | None = Field(None, max_length=128, description="Or an upload's id.")
    page: int = Field(0, ge=0, description="Which page of the document is labelled.")
    pairs: list[LabelledPair] = Field(min_length=1, max_length=200)
    _data: bytes | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _one_source(self) -> LabelledPage:
        if (self.document is None) == (self.file_id is None):
            raise ValueError("give exactly one of `document` (base64) or `file_id`")
        return self


class DocumentFitInput(BaseModel):
    """Fit a key/value tagging head on labelled pages; store it as a version of ``name``."""

    model_config = ConfigDict(extra="forbid")

    name: OwnedName  # the asking key's own (``owner/name`` is qualified where it is built)
    pages: list[LabelledPage] = Field(min_length=1, max_length=64)
    epochs: int = Field(300, ge=1, le=5000)
    lr: float = Field(0.01, gt=0, le=1)
    seed: int = 0


class DocumentFitResult(BaseModel):
    name: str
    version: int
    expert: str = ""
    pages: int
    words: int
    tagged: int = Field(description="Words tagged as part of a key or a value.")
    unmatched: list[str] = Field(description="Pairs whose key or value no page word spells.")
    epochs: int
    metrics: dict[str, float] = Field(
        description="On the training pages: accuracy and key/value word recall."
    )
    fit_seconds: float


DOCUMENT_FIT = Operation(Task.DOCUMENT, DocumentFitInput, DocumentFitResult, name="fit")


def _pieces(text: str) -> list[str]:
    """Word by word as ``normalise_label`` reads it ("$12.00" is one word, "12 00")."""
    return [normalise_label(piece) for piece in text.split()]


def _find(texts: list[str], wanted: str, start: int, free: list[bool]) -> int | None:
    """The first index >= ``start`` where untagged words spell ``wanted``."""
    target = _pieces(wanted)
    n = len(target)
    for i in range(start, len(texts) - n + 1):
        if n and all(free[i : i + n]) and texts[i : i + n] == target:
            return i
    return None


def tag_words(words: Sequence[Word], pairs: Sequence[LabelledPair]) -> tuple[list[int], list[str]]:
    """A tag id (index into ``TAGS``) per word, and the pairs that could not be placed."""
    texts = [normalise_label(w.text) for w in words]
    tags = [0] * len(words)
    free = [True] * len(words)
    unmatched: list[str] = []

    def mark(at: int, text: str, begin: int) -> int:
        count = len(text.split())
        for j in range(at, at + count):
            tags[j], free[j] = (begin if j == at else begin + 1), False
        return at + count

    for pair in pairs:
        key = _find(texts, pair.key, 0, free)
        if key is None:
            unmatched.append(f"key {pair.key!r}")
            continue
        after = mark(key, pair.key, 1)
        value = _find(texts, pair.value, after, free)
        if value is None:
            value = _find(texts, pair.value, 0, free)
        if value is None:
            unmatched.append(f"value {pair.value!r}")
            continue
        mark(value, pair.value, 3)
    return tags, unmatched


def fit_head(
    vectors: np.ndarray, labels: np.ndarray, *, epochs: int, lr: float, seed: int, torch: Any
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """A linear head (weight ``[tags, hidden]``, bias) trained on word vectors."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(vectors.astype(np.float32))
    y = torch.from_numpy(labels.astype(np.int64))
    head = torch.nn.Linear(x.shape[1], len(TAGS))
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * 0.02)
        head.bias.zero_()
    counts = torch.bincount(y, minlength=len(TAGS)).float()
    weights = torch.where(counts > 0, counts.sum() / (len(TAGS) * counts.clamp(min=1)), 0.0)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
    optimiser = torch.optim.Adam(head.parameters(), lr=lr)
    mean, std = x.mean(0), x.std(0).clamp(min=1e-6)
    z = (x - mean) / std  # standardised features train in a few hundred steps
    with torch.enable_grad():
        for _ in range(epochs):
            optimiser.zero_grad()
            loss = loss_fn(head(z), y)
            loss.backward()
            optimiser.step()
    with torch.no_grad():  # fold the standardisation into the stored head
        weight = head.weight / std
        bias = head.bias - (weight * mean).sum(1)
        predicted = (x @ weight.T + bias).argmax(1)
    tagged = y > 0
    recall = float((predicted[tagged] == y[tagged]).float().mean()) if tagged.any() else 0.0
    metrics = {"accuracy": float((predicted == y).float().mean()), "key_value_recall": recall}
    return weight.numpy(), bias.numpy(), metrics
