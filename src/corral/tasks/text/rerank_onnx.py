"""A CrossEncoder reranker's ONNX export on ONNX Runtime (``options.runtime: onnx``) or
OpenVINO (``options.runtime: openvino``, fp32).

The transformer is exported by ``corral.tasks.text.onnx_export`` (``logits`` out, cached in
``<state_dir>/onnx``); pairs are tokenised by the model's own tokenizer with its pair
encoding, truncated at the CrossEncoder's max length, so the logits are the torch model's
(``CrossEncoderReranker`` reduces two-label logits as it does for torch). The export is
served only if its scores pass ``encoder_guard.compare_scores`` against the torch model;
a refused or failed export leaves torch serving, with a warning.
``runtime: auto`` stays torch, for the reasons ``embed_export`` gives.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from corral.errors import ExpertUnavailable
from corral.experts._onnx import engine_of, export_options, open_onnx
from corral.experts.base import LoadContext, require
from corral.tasks.text.encoder_guard import compare_scores
from corral.tasks.text.onnx_export import OPSET, ExportOptions, cache_root, exported_model

__all__ = ["OnnxCrossEncoder", "cross_encoder_runtime"]

log = logging.getLogger("corral.experts")


class OnnxCrossEncoder:
    """Score (query, passage) pairs with an exported cross-encoder: raw logits out.

    ``tokenizer`` and ``max_seq_length`` are what ``CrossEncoderReranker.prepare`` reads."""

    def __init__(
        self,
        file: Path,
        model_dir: Path,
        max_seq_length: int,
        device: str,
        threads: int | None,
        engine: str = "onnxruntime",
    ) -> None:
        self.runner = open_onnx(file, device, threads, engine)
        transformers = require("transformers", "text")
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(
            str(model_dir), local_files_only=True
        )
        self.max_seq_length = max_seq_length

    def logits(self, pairs: list[tuple[str, str]], batch_size: int) -> np.ndarray:
        """One row of logits per pair (``(n,)`` or ``(n, labels)``), in input order."""
        parts = []
        for start in range(0, len(pairs), batch_size):
            batch = pairs[start : start + batch_size]
            encoded = self.tokenizer(
                [q for q, _ in batch],
                [d for _, d in batch],
                padding=True,
                truncation=True,
                max_length=self.max_seq_length,
                return_tensors="np",
            )
            feed = {name: encoded[name].astype(np.int64) for name in self.runner.inputs}
            parts.append(self.runner.run(feed))
        logits = np.concatenate(parts).astype(np.float64)
        return logits[:, 0] if logits.ndim == 2 and logits.shape[1] == 1 else logits


def cross_encoder_runtime(
    context: LoadContext, torch_model: Any, torch_logits: Any
) -> tuple[Any, str]:
    """The model to serve and the runtime it is on: the ONNX export when options ask for
    it and it passes the guard, else ``torch_model``. ``torch_logits(pairs)`` scores with
    the torch model (the guard's reference)."""
    runtime, quantize = export_options(context.options)
    if runtime == "auto":  # quantize: int8 alone asks for an export (ONNX Runtime's int8)
        runtime = "onnx" if quantize == "int8" else "torch"
    opset = context.options.get("opset", OPSET)
    if not isinstance(opset, int) or isinstance(opset, bool):
        raise ExpertUnavailable(f"options.opset is {opset!r}; give an ONNX opset number")
    if runtime not in ("onnx", "openvino"):
        return torch_model, "sentence-transformers/torch"
    name, path = context.spec.name, context.path
    engine = engine_of(runtime)
    threads = context.options.get("threads") or context.spec.threads

    def open_file(file: Path) -> OnnxCrossEncoder:
        length = int(torch_model.max_seq_length)
        return OnnxCrossEncoder(file, path, length, context.device, threads, engine)

    options = ExportOptions(
        "cross-encoder", "int8" if quantize == "int8" else "none", opset, engine
    )
    try:
        scorer, file = exported_model(path, options, cache_root(context), name, open_file)
    except Exception as exc:  # torch.onnx and onnxruntime raise many types
        log.warning(
            "%s: exporting %s to ONNX failed (%s: %s); serving the original on torch",
            name,
            path,
            type(exc).__name__,
            str(exc)[:300],
        )
        return torch_model, "sentence-transformers/torch (onnx export failed)"
    label = scorer.runner.label(quantize)
    result = compare_scores(lambda p: _relevance(scorer.logits(p, 32)), torch_logits)
    if not result.passed:
        log.warning(
            "%s: the ONNX export %s was refused by the accuracy guard (%s); serving the "
            "original on torch instead",
            name,
            file,
            result.describe(),
        )
        return torch_model, f"sentence-transformers/torch ({label} refused)"
    log.info("%s: %s passed the accuracy guard: %s", name, file, result.describe())
    return scorer, label


def _relevance(logits: np.ndarray) -> np.ndarray:
    """One score per pair: two-label models' last minus first, as the torch path does."""
    return logits[:, -1] - logits[:, 0] if logits.ndim == 2 else logits
