"""Static int8 for OpenVINO: an fp32 ONNX encoder quantised with NNCF, the library made for it.

ONNX Runtime's dynamic int8 (``quantize_dynamic``) quantises each batch's activations on
the fly; OpenVINO runs that file slower than fp32. NNCF instead measures the activations'
ranges once, on a fixed calibration sample, and writes an OpenVINO model (``.xml`` +
``.bin``) whose MatMuls run in int8 (VNNI where the CPU has it). On this 2-core EPYC
(avx512_vnni, avx512_bf16), all-MiniLM-L6-v2 at batch 64: 1323 sentences/s vs 970 for
OpenVINO bf16 and 982 for ONNX Runtime int8.

The recipe, chosen on the accuracy guard's numbers (worst cosine to torch):

* the down-projections (MatMuls whose weight narrows, ``K > N``: the FFN output after the
  activation, a classifier head) stay in floating point, as in corral's ORT int8: their
  inputs carry outliers (0.950 with them quantised, 0.9856 without);
* no SmoothQuant: on MiniLM it moved the error into the kept MatMuls (0.9844 with it,
  0.9948 without).

The calibration sample is fixed, deterministic and disjoint from the guard's, so the
guard still judges text the quantiser never saw.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Literal

import numpy as np

from corral.experts.base import require

__all__ = ["CALIBRATION", "quantize_int8"]

_SUBJECTS = (
    "The new library", "Our quarterly report", "A small bakery", "The city council",
    "This laptop", "The football club", "Her research paper", "The weather service",
    "An old lighthouse", "The support team", "A migrating bird", "The train to Lyon",
)  # fmt: skip
_MIDDLES = (
    "opened on Monday after", "was delayed because of", "explains in detail", "depends on",
    "will announce the results of", "has nothing to do with", "keeps improving thanks to",
)  # fmt: skip
_ENDS = (
    "the storm.", "a long discussion about taxes, budgets and the price of electricity.",
    "three new features.", "customers who asked for refunds twice in one week.",
    "the match.", "quantum error correction and why it matters for larger machines.",
    "you.", "the recipe, which needs flour, butter, sugar and two eggs.",
    "an unexpected bug in the login page that logged users out every few minutes.",
)  # fmt: skip
_TRIPLES = itertools.islice(
    zip(itertools.cycle(_SUBJECTS), itertools.cycle(_MIDDLES), itertools.cycle(_ENDS)), 63
)
# 63 sentences of 8 to 30 tokens and a 4-token one: lengths and topics as requests vary
CALIBRATION: tuple[str, ...] = (*(f"{s} {m} {e}" for s, m, e in _TRIPLES), "Hi.")


def quantize_int8(
    fp32: Path, target: Path, tokenizer_dir: Path, kind: Literal["embed", "cross-encoder"]
) -> None:
    """Write ``target`` (``.xml``, with its ``.bin``): ``fp32`` quantised by NNCF on the
    calibration sample tokenised by the model's own tokenizer."""
    ov = require("openvino", "openvino")
    nncf = require("nncf", "openvino")
    model = ov.Core().read_model(str(fp32))
    names = {name for port in model.inputs for name in port.get_names()}
    feeds = _calibration_feeds(tokenizer_dir, kind, names)
    quantized = nncf.quantize(
        model,
        nncf.Dataset(feeds),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(feeds),
        ignored_scope=nncf.IgnoredScope(names=_narrowing_matmuls(model), validate=False),
        advanced_parameters=nncf.AdvancedQuantizationParameters(
            smooth_quant_alphas=nncf.AdvancedSmoothQuantParameters(matmul=-1)  # off
        ),
    )
    ov.save_model(quantized, str(target))


def _calibration_feeds(
    tokenizer_dir: Path, kind: str, names: set[str]
) -> list[dict[str, np.ndarray]]:
    """One feed per sample (so every length is seen unpadded), only the inputs it takes."""
    transformers = require("transformers", "text")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tokenizer_dir))
    feeds: list[dict[str, np.ndarray]] = []
    for i, text in enumerate(CALIBRATION):
        pair: Any = (CALIBRATION[(i * 7 + 3) % len(CALIBRATION)],) if kind != "embed" else ()
        encoded = tokenizer(text, *pair, truncation=True, max_length=256, return_tensors="np")
        feeds.append({k: v.astype(np.int64) for k, v in encoded.items() if k in names})
    return feeds


def _narrowing_matmuls(model: Any) -> list[str]:
    """MatMuls with a 2-D constant weight that narrows (``K > N``)."""
    names = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul":
            continue
        shape = op.input_value(1).get_partial_shape()
        if not shape.is_static or len(shape) != 2:
            continue
        k, n = shape[0].get_length(), shape[1].get_length()
        if op.get_attributes().get("transpose_b"):
            k, n = n, k
        if k > n:
            names.append(op.get_friendly_name())
    return names
