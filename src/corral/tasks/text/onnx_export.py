"""Export a transformer encoder to ONNX (and int8), cached in the state directory.

sentence-transformers' own ``backend="onnx"`` needs optimum, whose releases pin
transformers < 4.58 (corral runs on 5), so the export is done with the libraries made for
it: ``torch.onnx.export`` (TorchScript exporter, dynamic batch and sequence axes) and
``onnxruntime.quantization.quantize_dynamic`` (QInt8 weights, per channel).

int8 leaves the down-projections (MatMuls whose weight narrows, ``K > N``: the FFN output
after the activation, a classifier head) in fp32: their inputs carry outliers that
per-tensor dynamic activation quantisation clips. On all-MiniLM-L6-v2 that is worst cosine
0.9928 to torch on the guard's sample, against 0.988 with every MatMul quantised (below
the guard's 0.99). On OpenVINO (``engine="openvino"``), int8 is NNCF's static
quantisation of the fp32 export instead (``corral.tasks.text.openvino_int8``), written as
``model.xml`` + ``model.bin``.

The file lives at ``<state_dir>/onnx/<key>/model.onnx`` (or ``model.xml``) with
``manifest.json`` written last; ``key`` hashes the model directory (config.json, the size
and first/last MB of each weight file) and the export options, so a changed model or
option exports anew. A second load uses the cached file; a cached file that does not match
its manifest, or that the caller cannot open (``open_cached`` raises), is exported again
with a warning.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from corral.artifacts import default_state_dir
from corral.experts._onnx import Engine
from corral.experts.base import LoadContext, require
from corral.tasks.text.openvino_int8 import quantize_int8

__all__ = ["OPSET", "ExportOptions", "cache_root", "exported_model"]

log = logging.getLogger("corral.experts")

OPSET = 17
RECIPE = 1  # bump when the export or quantisation recipe changes: old caches re-export
Kind = Literal["embed", "cross-encoder"]
T = TypeVar("T")
_OUTPUTS: dict[str, str] = {"embed": "last_hidden_state", "cross-encoder": "logits"}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_EDGE = 1 << 20  # bytes hashed at each end of a weight file
# the TorchScript exporter keeps its settings (opset, ...) in module globals, and
# catch_warnings swaps the process-wide filter list: one export at a time
_EXPORT_LOCK = threading.Lock()
_KEY_LOCKS: dict[str, threading.Lock] = {}
_KEY_LOCKS_LOCK = threading.Lock()


@dataclass(frozen=True)
class ExportOptions:
    kind: Kind
    quantize: Literal["none", "int8"]
    opset: int = OPSET
    engine: Engine = "onnxruntime"  # what int8 is made for

    @property
    def static_int8(self) -> bool:
        """int8 for OpenVINO: NNCF's static quantisation, an OpenVINO model file."""
        return self.quantize == "int8" and self.engine == "openvino"

    @property
    def file_name(self) -> str:
        return "model.xml" if self.static_int8 else "model.onnx"

    def identity(self) -> dict[str, Any]:
        """What the cache key hashes: the engine only where it changes the file (int8),
        so fp32 exports keep the keys they had."""
        fields = asdict(self)
        if not self.static_int8:
            del fields["engine"]
        return fields


def cache_root(context: LoadContext) -> Path:
    """``<runtime.state_dir>/onnx``: beside the artifact store, else the default state dir."""
    if context.artifacts is not None:
        return context.artifacts.root.parent / "onnx"
    return default_state_dir().expanduser() / "onnx"


def exported_model(
    model_dir: Path,
    options: ExportOptions,
    root: Path,
    name: str,
    open_cached: Callable[[Path], T],
) -> tuple[T, Path]:
    """``open_cached`` applied to the cached export of ``model_dir``, exporting it first if
    there is none, or if the cached one is damaged (manifest mismatch or ``open_cached``
    raising). Export errors propagate: the caller serves the original instead."""
    transformer = transformer_dir(model_dir)
    key = cache_key(transformer, options)
    target = root / key
    file = target / options.file_name
    with _key_lock(key):
        if _manifest_matches(file, key):
            try:
                opened = open_cached(file)
                log.info("%s: using the cached ONNX export %s (no export)", name, target)
                return opened, file
            except Exception as exc:  # ORT raises its own types for a damaged file
                log.warning(
                    "%s: the cached ONNX export %s cannot be loaded (%s); exporting it again",
                    name,
                    target,
                    str(exc)[:200],
                )
        elif target.exists():
            log.warning(
                "%s: the cached ONNX export %s does not match its manifest (damaged or "
                "unfinished); exporting it again",
                name,
                target,
            )
        _export_into(transformer, options, root, target, key, name)
        return open_cached(file), file


def transformer_dir(model_dir: Path) -> Path:
    """The Hugging Face model inside a sentence-transformers directory (modules.json's
    Transformer module), else the directory itself (a CrossEncoder or plain HF model)."""
    modules = model_dir / "modules.json"
    if modules.is_file():
        for module in json.loads(modules.read_text(encoding="utf-8")):
            if str(module.get("type", "")).endswith("Transformer"):
                return model_dir / str(module.get("path", ""))
    return model_dir


def cache_key(transformer: Path, options: ExportOptions) -> str:
    """Hash of config.json, each weight file's name, size and first/last MB, the options
    and the recipe version."""
    digest = hashlib.sha256(json.dumps({**options.identity(), "recipe": RECIPE}).encode())
    config = transformer / "config.json"
    digest.update(config.read_bytes() if config.is_file() else b"")
    for file in sorted(p for p in transformer.iterdir() if p.suffix in _WEIGHT_SUFFIXES):
        size = file.stat().st_size
        digest.update(f"{file.name}:{size}".encode())
        with file.open("rb") as handle:
            digest.update(handle.read(_EDGE))
            handle.seek(max(size - _EDGE, 0))
            digest.update(handle.read(_EDGE))
    return digest.hexdigest()[:32]


def _key_lock(key: str) -> threading.Lock:
    with _KEY_LOCKS_LOCK:
        return _KEY_LOCKS.setdefault(key, threading.Lock())


def _file_sha256(path: Path) -> str:
    """sha256 of the file and, for an OpenVINO ``.xml``, of its ``.bin`` weights too."""
    digest = hashlib.sha256()
    for part in (path, path.with_suffix(".bin")) if path.suffix == ".xml" else (path,):
        with part.open("rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def _manifest_matches(file: Path, key: str) -> bool:
    manifest = file.parent / "manifest.json"
    if not manifest.is_file() or not file.is_file():
        return False
    if file.suffix == ".xml" and not file.with_suffix(".bin").is_file():
        return False
    try:
        recorded = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        recorded.get("key") == key
        and recorded.get("bytes") == file.stat().st_size
        and recorded.get("sha256") == _file_sha256(file)
    )


def _export_into(
    transformer: Path, options: ExportOptions, root: Path, target: Path, key: str, name: str
) -> None:
    """Export (and quantise) into a temp dir beside ``target``, manifest last, then swap
    it in with a rename: a crash leaves the old entry or none, never a torn one."""
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=root, prefix=f".{key}.", suffix=".tmp"))
    try:
        label = "int8 " if options.quantize == "int8" else ""
        log.info(
            "%s: exporting %s to %sONNX (opset %d) ...", name, transformer, label, options.opset
        )
        started = time.perf_counter()
        file = work / options.file_name
        fp32 = work / ("fp32.onnx" if options.quantize == "int8" else "model.onnx")
        with _EXPORT_LOCK:
            _torch_export(transformer, options, fp32)
            exported = time.perf_counter() - started
            if options.quantize == "int8" and not options.static_int8:
                _quantize_int8(fp32, file)
        if options.static_int8:  # NNCF runs the model: outside the exporter's lock
            quantize_int8(fp32, file, transformer, options.kind)
        if fp32 != file:
            fp32.unlink()
        seconds = time.perf_counter() - started
        manifest = {
            "key": key,
            "model": str(transformer),
            **options.identity(),
            "recipe": RECIPE,
            "bytes": file.stat().st_size,
            "sha256": _file_sha256(file),
            "export_seconds": round(seconds, 2),
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        work.rename(target)
        log.info(
            "%s: exported %s to %sONNX in %.1f s (torch.onnx.export %.1f s) -> %s",
            name,
            transformer.name or transformer,
            label,
            seconds,
            exported,
            target,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _torch_export(transformer: Path, options: ExportOptions, file: Path) -> None:
    torch = require("torch", "text")
    transformers = require("transformers", "text")
    auto = (
        transformers.AutoModel
        if options.kind == "embed"
        else transformers.AutoModelForSequenceClassification
    )
    # eager attention traces to plain ops that every ONNX opset and ORT build runs
    model = auto.from_pretrained(
        str(transformer), local_files_only=True, attn_implementation="eager"
    ).eval()
    inputs = ["input_ids", "attention_mask"]
    if "token_type_ids" in inspect.signature(model.forward).parameters:
        inputs.append("token_type_ids")
    output = _OUTPUTS[options.kind]
    sample = tuple(torch.ones(2, 8, dtype=torch.long) for _ in inputs)
    axes = {n: {0: "batch", 1: "sequence"} for n in inputs}
    axes[output] = {0: "batch", 1: "sequence"} if options.kind == "embed" else {0: "batch"}

    class Outputs(torch.nn.Module):  # type: ignore[misc, name-defined]
        """Positional inputs in, the one named output tensor out: what torch.onnx traces."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: Any) -> Any:
            return getattr(self.model(**dict(zip(inputs, tensors, strict=True))), output)

    with torch.no_grad(), warnings.catch_warnings():
        # the TorchScript exporter (and torch.jit under it) is deprecated in favour of
        # dynamo's, which needs onnxscript; its tracer warns about shape-dependent Python
        # branches it records (checked: outputs match torch for other batch/length shapes)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            Outputs(),
            sample,
            str(file),
            dynamo=False,  # the dynamo exporter needs onnxscript; TorchScript's does not
            input_names=inputs,
            output_names=[output],
            dynamic_axes=axes,
            opset_version=options.opset,
        )


def _quantize_int8(fp32: Path, int8: Path) -> None:
    onnx = require("onnx", "onnx")
    quantization = require("onnxruntime.quantization", "onnx")
    graph = onnx.load(str(fp32)).graph
    weights = {i.name: tuple(i.dims) for i in graph.initializer}
    narrowing = [
        node.name
        for node in graph.node
        if node.op_type == "MatMul"
        and len(shape := weights.get(node.input[1], ())) == 2
        and shape[0] > shape[1]
    ]
    quantization.quantize_dynamic(
        str(fp32),
        str(int8),
        weight_type=quantization.QuantType.QInt8,
        per_channel=True,
        nodes_to_exclude=narrowing,
        extra_options={"MatMulConstBOnly": True},
    )
