"""Model id -> (task, backend, where the weights are).

One table (``CATALOG``, in ``catalog_entries.py``) for the ids corral knows by name, one
rule for Ollama-style ``name:tag`` ids, and file sniffing for anything else found on
disk. ``resolve`` records every place it looked, so ``corral check`` can say exactly what
is missing and how to supply it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from corral.catalog_entries import CATALOG, CatalogEntry, missing_task_hint
from corral.config import ModelConfig, RuntimeConfig, Task
from corral.errors import CorralError
from corral.experts._onnx import fastest_export
from corral.tasks import FAMILIES

__all__ = [
    "CATALOG",
    "CatalogEntry",
    "ResolvedModel",
    "hf_cache_dir",
    "hf_download_command",
    "missing_task_hint",
    "resolve",
]


# Ollama-style ids (``qwen3:8b``) are chat models served by an Ollama upstream.
_OLLAMA_ID = re.compile(r"^[a-z0-9][a-z0-9._-]*:[A-Za-z0-9._-]+$")
_OLLAMA_DEFAULT_HOST = "http://127.0.0.1:11434"

# A model trained for one task can serve another through a different backend.
_DERIVED_BACKENDS: Mapping[tuple[str, Task], str] = {
    ("sentence-transformers", Task.RERANK): "bi-encoder",
    ("sentence-transformers", Task.CLASSIFY): "similarity",
}

# Backend used when a task is given but the id is unknown and nothing can be sniffed.
_DEFAULT_BACKEND: Mapping[Task, str] = {
    task: backend for family in FAMILIES for task, backend in family.defaults.items()
}

_UPSTREAM_BACKENDS = frozenset({"ollama", "openai"})
# backends whose models corral can export to ONNX (options.runtime: onnx)
_EXPORTABLE = frozenset({"sentence-transformers", "cross-encoder"})


@dataclass
class ResolvedModel:
    """Everything the runtime needs to build an expert, and what ``check`` reports."""

    name: str
    model: str
    task: Task | None
    backend: str | None
    path: Path | None = None
    base_url: str | None = None
    role: str | None = None
    looked: list[str] = field(default_factory=list)
    hint: str = ""
    note: str = ""
    repo: str | None = None  # the hub repo `corral pull` fetches from (None: nothing to fetch)
    revision: str | None = None
    stand_in: str | None = None
    runtime: str | None = None  # the engine and precision a converted model will run on

    @property
    def found(self) -> bool:
        return self.path is not None or self.base_url is not None

    @property
    def weights(self) -> str:
        if self.base_url is not None:
            return f"upstream {self.base_url}"
        return str(self.path) if self.path else "missing"


def resolve(
    spec: ModelConfig, runtime: RuntimeConfig, environ: Mapping[str, str] | None = None
) -> ResolvedModel:
    """Work out task, backend and weights location for one configured model."""
    env = os.environ if environ is None else environ
    entry = CATALOG.get(spec.model)
    if entry is None and _OLLAMA_ID.match(spec.model):
        entry = CatalogEntry(Task.CHAT, "ollama")
    result = ResolvedModel(
        name=spec.name,
        model=spec.model,
        task=spec.task or (entry.task if entry else None),
        backend=spec.backend,
        role=spec.role or (entry.role if entry else None),
        note=entry.note if entry else "",
        revision=spec.revision,
        stand_in=entry.stand_in if entry else None,
    )
    if result.backend is None and entry is not None:
        result.backend = _backend_for(entry.backend, entry.task, result.task)
    if entry is not None and entry.quantized and result.backend == entry.backend:
        asked = spec.options.get("runtime")
        engine = "openvino" if asked == "openvino" else entry.backend
        converted = f"{engine}-{entry.quantized}"
        result.runtime = "sentence-transformers/torch" if asked == "torch" else converted
    result.repo = _hub_repo(spec, entry)

    if result.backend in _UPSTREAM_BACKENDS or (entry is None and spec.base_url):
        result.base_url = spec.base_url or _upstream_url(result.backend, env)
        result.looked.append(f"upstream {result.base_url} (reachability is checked on use)")
        return result

    result.path = _find_weights(spec, runtime, entry, env, result.looked, result.repo)
    if result.path is not None and result.backend == "llama-cpp" and result.path.is_dir():
        result.path = _pick_gguf(result.path, spec) or result.path
    if result.path is not None and (result.task is None or result.backend is None):
        sniffed = sniff_directory(result.path)
        if sniffed is not None:
            task, backend = sniffed
            result.task = result.task or task
            result.backend = result.backend or _backend_for(backend, task, result.task)
    if result.backend is None and result.task is not None:
        result.backend = _DEFAULT_BACKEND.get(result.task)
    if result.path is None:
        result.hint = _how_to_supply(spec, entry)
    elif result.task is None:
        result.hint = "cannot tell what this model does: set `task:` (and `backend:`)"
    asked = spec.options.get("runtime", "auto")
    quantize = spec.options.get("quantize")
    if result.backend == "sentence-transformers" and result.task == Task.EMBED and asked == "auto":
        asked, quantize = fastest_export(spec.device, quantize)  # embed_export.py's choice
    if result.backend in _EXPORTABLE and asked in ("onnx", "openvino"):
        # tasks/text/onnx_export.py: served if the export passes the accuracy guard
        engine = "openvino" if asked == "openvino" else "onnxruntime"
        result.runtime = engine + ("-int8" if quantize == "int8" else "")
    return result


def declared_backend(spec: ModelConfig) -> tuple[Task | None, str | None]:
    """The task and backend the config and the catalog name, before any weights are read
    (a bare local folder's backend is only known once its files are sniffed: None)."""
    entry = CATALOG.get(spec.model)
    if entry is None and _OLLAMA_ID.match(spec.model):
        entry = CatalogEntry(Task.CHAT, "ollama")
    task = spec.task or (entry.task if entry else None)
    if spec.backend is not None or entry is None:
        return task, spec.backend
    return task, _backend_for(entry.backend, entry.task, task)


def _backend_for(backend: str, native: Task, wanted: Task | None) -> str | None:
    if wanted is None or wanted == native:
        return backend
    return _DERIVED_BACKENDS.get((backend, wanted))


def _upstream_url(backend: str | None, env: Mapping[str, str]) -> str:
    if backend == "ollama":
        host = env.get("OLLAMA_HOST", _OLLAMA_DEFAULT_HOST)
        return host if "://" in host else f"http://{host}"
    return env.get("OPENAI_BASE_URL", "https://api.openai.com/v1")


def _find_weights(
    spec: ModelConfig,
    runtime: RuntimeConfig,
    entry: CatalogEntry | None,
    env: Mapping[str, str],
    looked: list[str],
    repo: str | None,
) -> Path | None:
    if spec.path is not None:
        path = spec.path.expanduser()
        looked.append(f"path: {path}")
        return path if path.exists() else None
    for candidate in _local_candidates(spec.model, runtime, env):
        looked.append(str(candidate))
        if candidate.is_dir():
            return candidate
    if entry is not None and entry.locate is not None:
        located = entry.locate()
        looked.append(f"package {entry.package}: {located or 'not installed'}")
        if located is not None and located.exists():
            return located
    return _hf_cache_snapshot(repo or spec.model, spec.revision, env, looked)


def _local_candidates(model_id: str, runtime: RuntimeConfig, env: Mapping[str, str]) -> list[Path]:
    roots = [runtime.models_dir] if runtime.models_dir else []
    if env.get("CORRAL_MODELS_DIR"):
        roots.append(Path(env["CORRAL_MODELS_DIR"]))
    local = Path(model_id).expanduser()
    candidates = [local] if model_id.startswith((".", "/", "~")) else []
    for root in roots:
        candidates += [root / model_id, root / model_id.split("/")[-1]]
    return candidates


def hf_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """The Hugging Face hub cache, as ``huggingface_hub`` computes it (HF_HUB_CACHE, else
    HF_HOME/hub, else ~/.cache/huggingface/hub), so `hf` and corral share one cache."""
    env = os.environ if env is None else env
    hf_home = Path(env.get("HF_HOME", Path.home() / ".cache" / "huggingface")).expanduser()
    return Path(env.get("HF_HUB_CACHE", hf_home / "hub")).expanduser()


def _hf_cache_snapshot(
    model_id: str, revision: str | None, env: Mapping[str, str], looked: list[str]
) -> Path | None:
    """The Hugging Face hub cache layout: models--org--name/snapshots/<commit>, found
    through refs/<revision> (main by default) or the commit itself."""
    if "/" not in model_id or model_id.startswith((".", "/", "~")):
        return None
    repo = hf_cache_dir(env) / ("models--" + model_id.replace("/", "--"))
    looked.append(f"Hugging Face cache {repo}" + (f" at {revision}" if revision else ""))
    if revision is not None and (repo / "snapshots" / revision).is_dir():
        return repo / "snapshots" / revision
    ref = repo / "refs" / (revision or "main")
    if ref.is_file():
        snapshot = repo / "snapshots" / ref.read_text().strip()
        if snapshot.is_dir():
            return snapshot
    if revision is not None:
        return None  # a pinned revision never falls back to another snapshot
    snapshots = sorted((repo / "snapshots").glob("*")) if (repo / "snapshots").is_dir() else []
    return snapshots[-1] if snapshots else None


def _hub_repo(spec: ModelConfig, entry: CatalogEntry | None) -> str | None:
    """The repo `corral pull` fetches for this expert, or None when nothing can be fetched
    (a local path, weights shipped in a package, no loadable file on the Hub, an upstream)."""
    if spec.path is not None or spec.base_url is not None:
        return None
    if entry is not None:
        if not entry.fetch or entry.package is not None or entry.backend in _UPSTREAM_BACKENDS:
            return None
        return entry.repo or spec.model
    if "/" in spec.model and not spec.model.startswith((".", "/", "~")):
        return spec.model
    return None


def hf_download_command(repo: str, spec: ModelConfig) -> str:
    """The `hf` command that fetches what corral would (one quantisation of a GGUF repo)."""
    entry = CATALOG.get(spec.model)
    if (spec.backend or (entry.backend if entry else None)) == "llama-cpp":
        quant = spec.options.get("quant", "Q4_K_M")
        return f"hf download {repo} --include '*{quant}*.gguf'"
    return f"hf download {repo}"


def _pick_gguf(folder: Path, spec: ModelConfig) -> Path | None:
    """The GGUF file in a downloaded folder that ``options.quant``/``file`` names."""
    from corral.pull.files import select_files

    names = sorted(p.name for p in folder.glob("*.gguf"))
    try:
        return folder / select_files("llama-cpp", names, spec.options).files[0]
    except CorralError:
        return None


def _how_to_supply(spec: ModelConfig, entry: CatalogEntry | None) -> str:
    if spec.path is not None:
        return f"nothing at path: {spec.path}; fix the path or remove it to search the defaults"
    ways = []
    if entry is not None and entry.package:
        ways.append(f"`pip install {entry.package}`")
    repo = _hub_repo(spec, entry)
    if repo is not None:
        ways.append("`corral pull` (or `corral serve`, which downloads what is missing)")
        ways.append(f"`{hf_download_command(repo, spec)}` on a machine with Hub access")
        ways.append("set `path:` to a local copy, or put it under $CORRAL_MODELS_DIR/<org>/<name>")
    elif entry is not None and not entry.fetch and entry.note:
        ways.append(entry.note)
    else:
        ways.append("set `path:` to a local copy")
    return "; or ".join(ways)


def sniff_directory(path: Path) -> tuple[Task, str] | None:
    """Infer (task, backend) from the files a model directory holds."""
    if path.is_file():
        return _SUFFIX_TASKS.get(path.suffix)
    if (path / "modules.json").exists():
        return Task.EMBED, "sentence-transformers"
    if (path / "meta.json").exists() and (path / "config.cfg").exists():
        return Task.NER, "spacy"
    config_file = path / "config.json"
    if config_file.exists():
        return _sniff_transformers_config(json.loads(config_file.read_text(encoding="utf-8")))
    for suffix, task in _SUFFIX_TASKS.items():
        if any(path.glob(f"*{suffix}")):
            return task
    return None


_SUFFIX_TASKS: Mapping[str, tuple[Task, str]] = {
    ".gguf": (Task.CHAT, "llama-cpp"),
}


def _sniff_transformers_config(config: dict[str, object]) -> tuple[Task, str] | None:
    if "chronos_config" in config or "chronos_pipeline_class" in config:
        return Task.FORECAST, "chronos"
    architectures = config.get("architectures") or []
    arch = str(architectures[0]) if isinstance(architectures, list) and architectures else ""
    labels = {str(v).lower() for v in dict(config.get("id2label") or {}).values()}  # type: ignore[call-overload]
    if arch.endswith("ForSequenceClassification"):
        if "entailment" in labels:
            return Task.CLASSIFY, "nli"
        if len(labels) == 1:
            return Task.RERANK, "cross-encoder"
        return Task.CLASSIFY, "sequence-classification"
    if arch.endswith("ForTokenClassification"):
        return Task.NER, "token-classification"
    return None
