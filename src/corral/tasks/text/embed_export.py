"""sentence-transformers embedders that can run as an ONNX export of themselves.

``options: {runtime: onnx, quantize: none|int8}`` exports the model's transformer with
``corral.tasks.text.onnx_export`` (cached in ``<state_dir>/onnx``) and serves it with
``OnnxSentenceEncoder`` on ONNX Runtime; ``runtime: openvino`` serves the fp32 export on
OpenVINO (bf16 where the CPU has it: as fast here as ORT int8, at cosine 0.99998 to
torch), and ``runtime: openvino, quantize: int8`` NNCF's static int8 of it (the fastest
here, 1.36x OpenVINO bf16, cosine 0.9948). Each is served if it passes the accuracy guard
against the torch model, else the torch model with a warning; an export that fails also
leaves torch serving, with a warning.

``runtime: auto`` (the default) serves the fastest of these whose libraries are installed
on a CPU (``fastest_export``: OpenVINO int8, else ONNX Runtime int8, else torch), and torch
on a GPU. Its first start pays the export (about 8 s for MiniLM, logged with its time);
later starts load the cached file. Its vectors are the guard's distance from torch's
(cosine >= 0.99), not equal to them: ``runtime: torch`` keeps a direct
``SentenceTransformer.encode``'s vectors exactly.
"""

from __future__ import annotations

import logging

from corral.errors import ExpertUnavailable
from corral.experts._onnx import engine_of, export_options, fastest_export
from corral.tasks.text.embed_onnx import OnnxEmbedder, OnnxSentenceEncoder
from corral.tasks.text.onnx_export import OPSET, ExportOptions, cache_root, exported_model

__all__ = ["ExportableEmbedder"]

log = logging.getLogger("corral.experts")


class ExportableEmbedder(OnnxEmbedder):
    """A sentence-transformers embedder on torch, or on ONNX Runtime when asked."""

    backend = "sentence-transformers"
    uses_torch = True  # torch by default; ``threads:`` sets its intra-op threads

    def _options(self) -> tuple[str, str]:
        runtime, quantize = export_options(self.context.options)
        if runtime != "auto":
            return runtime, quantize
        # auto with quantize: none serves the fp32 export
        return fastest_export(self.context.device, self.context.options.get("quantize"))

    def _serve(self, runtime: str, quantize: str) -> None:
        path = self.context.path
        if runtime not in ("onnx", "openvino"):
            self._serve_original(path, f"options.runtime {runtime}")
            return
        name = self.context.spec.name
        engine = engine_of(runtime)
        options = ExportOptions(
            "embed", "int8" if quantize == "int8" else "none", self._opset(), engine
        )
        threads, device = self._threads(), self.context.device
        try:
            encoder, file = exported_model(
                path,
                options,
                cache_root(self.context),
                name,
                lambda f: OnnxSentenceEncoder(f, path, device, threads, engine),
            )
        except Exception as exc:  # torch.onnx and onnxruntime raise many types
            log.warning(
                "%s: exporting %s to ONNX failed (%s: %s); serving the original on torch",
                name,
                path,
                type(exc).__name__,
                str(exc)[:300],
            )
            self._serve_original(path, "the ONNX export failed")
            self.runtime_in_use = "sentence-transformers/torch (onnx export failed)"
            return
        self._serve_checked(encoder, file, path, quantize)

    def _opset(self) -> int:
        opset = self.context.options.get("opset", OPSET)
        if not isinstance(opset, int) or isinstance(opset, bool):
            raise ExpertUnavailable(f"options.opset is {opset!r}; give an ONNX opset number")
        return opset
