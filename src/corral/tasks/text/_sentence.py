"""The sentence-transformers encoder every embedding-based expert runs on.

Embedding, bi-encoder rerank and similarity classification all embed a flat list of
texts; they differ only in how a request becomes texts (``prepare``) and what the
vectors mean (``finish``). One copy of the weights is shared by all of them.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np
from pydantic import BaseModel

from corral.catalog import CATALOG
from corral.errors import ExpertUnavailable, InvalidRequest
from corral.experts._memory import torch_bytes
from corral.experts.base import Expert, LoadContext, require

RequestT = TypeVar("RequestT", bound=BaseModel)
ResultT = TypeVar("ResultT")
# which side of a too-long text is cut ("none": refuse it instead, 422)
Truncate = Literal["end", "start", "none"]
# Cohere's input_type -> the sentence-transformers prompt names that mean the same
_INPUT_TYPE_PROMPTS: Mapping[str, tuple[str, ...]] = {
    "search_query": ("search_query", "query"),
    "search_document": ("search_document", "document", "passage", "corpus"),
    "classification": ("classification",),
    "clustering": ("clustering",),
}


@dataclass(frozen=True)
class Embedding:
    vector: np.ndarray
    tokens: int


# One lock per shared model: experts sharing a SentenceTransformer run on worker threads
# of their own, and a fast tokenizer's padding/truncation state is not thread-safe (two
# threads at once made "Unable to create tensor ... excessive nesting" 500s under load).
_MODEL_LOCKS: dict[tuple[str, ...], threading.Lock] = {}
_LOCKS_LOCK = threading.Lock()


def model_lock(key: tuple[str, ...]) -> threading.Lock:
    """The lock every user of the shared model ``key`` holds while it runs it."""
    with _LOCKS_LOCK:
        return _MODEL_LOCKS.setdefault(key, threading.Lock())


def shared_sentence_transformer(context: LoadContext) -> tuple[Any, tuple[str, ...]]:
    """Return (model, key); pass ``key`` to ``context.shared.release`` on unload."""
    st = require("sentence_transformers", "text")
    key = ("sentence-transformers", str(context.path), context.device)

    def build() -> Any:
        return st.SentenceTransformer(
            str(context.path), device=context.device, local_files_only=True
        )

    return context.shared.acquire(key, build), key


def check_torch_runtime(context: LoadContext) -> None:
    """``options.runtime``/``quantize`` on a sentence-transformers model serving a task
    other than embed (bi-encoder rerank, similarity classify): only torch fp32 runs here.
    The ONNX export (``onnx_export``) serves embed experts and cross-encoder rerankers;
    sentence-transformers' own ONNX/OpenVINO backends need optimum, which pins
    transformers < 4.58 while corral runs on transformers 5."""
    runtime = str(context.options.get("runtime", "auto"))
    quantize = str(context.options.get("quantize", "none"))
    if runtime in ("auto", "torch") and quantize == "none":
        return
    raise ExpertUnavailable(
        f"options runtime={runtime!r} quantize={quantize!r}: this expert runs its "
        "sentence-transformers model on torch (runtime auto|torch, quantize none); ONNX "
        "and int8 serve embed experts (task: embed) and cross-encoder rerankers"
    )


def count_tokens(model: Any, texts: list[str]) -> list[int]:
    """Tokens per text as the model sees them (special tokens included, truncated)."""
    encoded = model.tokenizer(
        texts, add_special_tokens=True, truncation=True, max_length=model.max_seq_length
    )
    return [len(ids) for ids in encoded["input_ids"]]


def cuts_text(truncate: Truncate, limit: int | None) -> bool:
    """Whether corral cuts texts itself (tokenizing them): when asked for fewer tokens than
    the model reads, or from the start; the model cuts the end at its own length anyway."""
    return truncate != "end" or limit is not None


def clip_text(tokenizer: Any, text: str, max_tokens: int, truncate: Truncate, where: str) -> str:
    """``text`` cut to ``max_tokens`` tokens (no special tokens) at token boundaries, from
    the end or the start; with ``truncate="none"`` a too-long text is a 422 instead."""
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = encoded["offset_mapping"]
    if len(offsets) <= max_tokens:
        return text
    if truncate == "none":
        raise InvalidRequest(
            f"{where} has {len(offsets)} tokens, over the {max_tokens} the expert reads; "
            "shorten it, or allow truncation (truncate: END/START)",
            param=where.split("[")[0],
        )
    if max_tokens <= 0:
        return ""
    if truncate == "start":
        return text[offsets[len(offsets) - max_tokens][0] :]
    return text[: offsets[max_tokens - 1][1]]


class SentenceEncoderExpert(Expert[RequestT, str, Embedding, ResultT]):
    """Loads the shared SentenceTransformer and embeds a batch of texts in one ``encode``."""

    # unit-length vectors for experts that compare them by dot product; embeddings are
    # returned exactly as the model's own pipeline makes them
    normalize: ClassVar[bool] = True

    def load(self) -> None:
        check_torch_runtime(self.context)
        self.model, self._key = shared_sentence_transformer(self.context)
        self._lock = model_lock(self._key)
        self.runtime_in_use = "sentence-transformers/torch"
        entry = CATALOG.get(self.context.spec.model)
        # the config's prompts win over the model's own, which win over the catalog's
        self.prompts: dict[str, str] = {
            **(entry.prompts if entry is not None else {}),
            **dict(getattr(self.model, "prompts", None) or {}),
            **self.context.spec.prompts,
        }

    def prompt(self, prompt_name: str | None = None, input_type: str | None = None) -> str:
        """The text put before each input: the named prompt, the one matching Cohere's
        ``input_type`` (none if the model has none for it), else the model's default."""
        if prompt_name is not None:
            if prompt_name not in self.prompts:
                known = ", ".join(sorted(self.prompts)) or "none"
                raise InvalidRequest(
                    f"prompt_name {prompt_name!r} is not one of expert "
                    f"{self.context.spec.name!r}'s prompts ({known}); add it under `prompts:`",
                    param="prompt_name",
                )
            return self.prompts[prompt_name]
        if input_type is not None:
            names = _INPUT_TYPE_PROMPTS.get(input_type, (input_type,))
            return next((self.prompts[n] for n in names if n in self.prompts), "")
        default = getattr(self.model, "default_prompt_name", None)
        return self.prompts.get(default, "") if default else ""

    def fit(
        self, texts: list[str], prompt: str, truncate: Truncate, limit: int | None, param: str
    ) -> list[str]:
        """Each text with ``prompt`` before it, cut to ``limit`` tokens (else the model's
        length) on the ``truncate`` side. Cutting the end at the model's length is what
        the model does anyway, so that case costs no tokenizing."""
        if not cuts_text(truncate, limit):
            return [prompt + t for t in texts]
        tokenizer = self.model.tokenizer
        with self._lock:
            room = self.model.max_seq_length - _special_tokens(tokenizer)
            room -= len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) if prompt else 0
            room = min(room, limit) if limit is not None else room
            return [
                prompt + clip_text(tokenizer, t, room, truncate, f"{param}[{i}]")
                for i, t in enumerate(texts)
            ]

    def unload(self) -> None:
        self.context.shared.release(self._key)
        del self.model

    def resident_bytes(self) -> int | None:
        return torch_bytes(self.model)

    def forward(self, items: list[str]) -> list[Embedding]:
        with self._lock:
            vectors: Any = self.model.encode(
                items,
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=self.normalize,
                prompt="",  # prompts were put before the texts by ``prompt``/``fit`` already
                show_progress_bar=False,
            )
            tokens = count_tokens(self.model, items)
        return [
            Embedding(np.asarray(v, dtype=np.float32), t)
            for v, t in zip(vectors, tokens, strict=True)
        ]


def _special_tokens(tokenizer: Any) -> int:
    """Tokens the tokenizer adds around one text ([CLS] and [SEP] for BERT)."""
    return len(tokenizer("", add_special_tokens=True)["input_ids"])
