"""YOLO (v8 to v12) detectors exported to ONNX, run on ONNX Runtime.

Pre- and post-processing follow what Ultralytics does for its own exports, so boxes
match ``yolo predict`` on the same weights:

* **Letterbox**: resize keeping the aspect ratio to the model's input (640 x 640 unless
  the model says otherwise), centred, padded with grey 114; RGB, scaled to [0, 1], NCHW.
* **Raw head** ``[batch, 4 + classes, anchors]``: ``cx, cy, w, h`` in letterboxed pixels,
  then one score per class (already sigmoid). Segmentation and pose heads carry more
  rows after the class scores; they are ignored. End-to-end exports (YOLOv10, ``nms=True``)
  give ``[batch, boxes, 6]``: ``x1, y1, x2, y2, score, class``; they skip NMS.
* **Boxes back** to the original image: minus the padding, divided by the scale, clipped.
* **Class-wise NMS** with OpenCV (``corral.tasks.detect.expert.nms``), then ``max_detections``.
  With ``classes`` given, each anchor's best class is chosen among those classes.

Class names: the config's ``labels:``, else the ``names`` metadata Ultralytics writes
into the export (a Python dict literal, read with ``ast.literal_eval``), else COCO's 80.
The model path is a ``.onnx`` file, or a directory holding one (``options.file`` picks
one when there are several). ``device: cuda`` uses ONNX Runtime's CUDA provider.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path
from typing import Any

import numpy as np

from corral.errors import ExpertUnavailable
from corral.experts._onnx import onnx_providers, session_options
from corral.experts.base import LoadContext, require
from corral.experts.options import OnnxDetectorOptions
from corral.tasks.detect.expert import COCO_NAMES, DetectExpert, DetectItem, ImageDetections, nms

__all__ = [
    "OnnxYoloDetector",
    "input_size",
    "letterbox",
    "names_from_metadata",
    "onnx_file",
    "onnx_providers",
    "onnx_session",
    "pad_batch",
]

log = logging.getLogger("corral.experts")
_PAD = (114, 114, 114)


def onnx_file(path: Path, choose: str | None = None) -> Path:
    """The ``.onnx`` file at ``path`` (a file, or a directory holding exactly one)."""
    if path.is_file():
        return path
    candidates = sorted(path.glob("*.onnx")) if path.is_dir() else []
    if choose is not None:
        candidates = [c for c in candidates if c.name == choose]
    if len(candidates) != 1:
        found = ", ".join(c.name for c in candidates) or "none"
        raise ExpertUnavailable(
            f"expected one .onnx file in {path} (found: {found}); set options.file to choose"
        )
    return candidates[0]


def onnx_session(context: LoadContext) -> tuple[Any, Path]:
    """An ONNX Runtime session on the expert's ``.onnx`` (``options.file`` picks one of
    several), with ``options.threads`` intra-op threads and the device's providers."""
    ort = require("onnxruntime", "vision")
    options = context.options
    file = onnx_file(context.path, options.get("file"))
    threads = int(options["threads"]) if options.get("threads") else None
    providers = onnx_providers(ort, context.device, context.spec.device)
    return ort.InferenceSession(str(file), session_options(ort, threads), providers=providers), file


def letterbox(frame: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, float, int, int]:
    """``frame`` resized into ``size`` (height, width) keeping its aspect, centred on grey
    114; returns the image, the scale, and the left and top padding."""
    cv2 = require("cv2", "vision")
    height, width = frame.shape[:2]
    target_h, target_w = size
    scale = min(target_h / height, target_w / width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    if (new_w, new_h) != (width, height):
        frame = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    dw, dh = (target_w - new_w) / 2, (target_h - new_h) / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    padded = cv2.copyMakeBorder(frame, top, bottom, left, right, cv2.BORDER_CONSTANT, value=_PAD)
    return padded, scale, left, top


def names_from_metadata(metadata: dict[str, str]) -> list[str] | None:
    """Ultralytics writes ``names`` as ``"{0: 'person', 1: 'bicycle', ...}"``."""
    text = metadata.get("names")
    if not text:
        return None
    try:
        names = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    if isinstance(names, dict) and sorted(names) == list(range(len(names))):
        return [str(names[i]) for i in range(len(names))]
    if isinstance(names, list):
        return [str(n) for n in names]
    return None


def input_size(shape: list[Any], metadata: dict[str, str], option: Any) -> tuple[int, int] | None:
    """(height, width) to resize to: the model's fixed input, ``options.imgsz``, or the
    ``imgsz`` Ultralytics writes; None when the model takes any size."""
    if len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int):
        return shape[2], shape[3]
    value: Any = option
    if value is None and metadata.get("imgsz"):
        try:
            value = ast.literal_eval(metadata["imgsz"])
        except (ValueError, SyntaxError):
            value = None
    if isinstance(value, int):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return int(value[0]), int(value[1])
    return None


class OnnxYoloDetector(DetectExpert):
    """Detect objects in images with a YOLO model exported to ONNX."""

    options_model = OnnxDetectorOptions
    backend = "onnx-yolo"

    def load(self) -> None:
        options = self.context.options
        self.session, _ = onnx_session(self.context)
        model_input = self.session.get_inputs()[0]
        metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.input_name = model_input.name
        self.dtype = np.float16 if "float16" in model_input.type else np.float32
        size = input_size(list(model_input.shape), metadata, options.get("imgsz"))
        self.size = size or (640, 640)
        batch = model_input.shape[0] if model_input.shape else 1
        # a fixed batch (Ultralytics exports batch 1 unless dynamic=True) runs frame by frame
        self.fixed_batch = isinstance(batch, int)
        self.max_batch = batch if isinstance(batch, int) else int(options.get("max_batch", 16))
        self.names = list(self.context.spec.labels or names_from_metadata(metadata) or COCO_NAMES)
        self._check_output(self.session.get_outputs()[0].shape)

    def _check_output(self, shape: list[Any]) -> None:
        rows = shape[1] if len(shape) == 3 else None
        if isinstance(rows, int) and rows < 4 + len(self.names) and shape[2] != 6:
            raise ExpertUnavailable(
                f"the model's output has {rows} rows per box but {len(self.names)} class "
                "names need 4 + that: set `labels:` to the model's classes"
            )

    def unload(self) -> None:
        del self.session

    def forward(self, items: list[DetectItem]) -> list[ImageDetections]:
        outputs: list[ImageDetections] = []
        for start in range(0, len(items), self.max_batch):
            chunk = items[start : start + self.max_batch]
            boxed = [letterbox(item.frame, self.size) for item in chunk]
            batch = np.stack([b[0] for b in boxed]).transpose(0, 3, 1, 2)
            batch = (batch.astype(np.float32) / 255.0).astype(self.dtype)
            if self.fixed_batch and len(chunk) < self.max_batch:
                batch = pad_batch(batch, self.max_batch, 114 / 255)
            raw = np.asarray(self.session.run(None, {self.input_name: batch})[0], np.float32)
            for row, (item, (_, scale, left, top)) in enumerate(zip(chunk, boxed, strict=True)):
                outputs.append(self._decode(raw[row], item, scale, left, top))
        return outputs

    def _decode(
        self, raw: np.ndarray, item: DetectItem, scale: float, left: int, top: int
    ) -> ImageDetections:
        nc = len(self.names)
        if raw.shape[-1] == 6 and raw.shape[0] != 4 + nc:  # end-to-end: [boxes, 6], no NMS
            boxes, scores, class_ids = raw[:, :4], raw[:, 4], raw[:, 5].astype(np.int64)
            valid = (class_ids >= 0) & (class_ids < nc)
            boxes, scores, class_ids = boxes[valid], scores[valid], class_ids[valid]
        else:
            table = raw[4 : 4 + nc].T  # [anchors, classes]
            if item.classes is not None:
                table = np.where(np.isin(np.arange(nc), list(item.classes)), table, -np.inf)
            class_ids = table.argmax(axis=1)
            scores = table[np.arange(len(table)), class_ids]
            centre, half = raw[0:2].T, raw[2:4].T / 2
            boxes = np.column_stack([centre - half, centre + half])
        boxes = (boxes - [left, top, left, top]) / scale
        height, width = item.frame.shape[:2]
        return nms(boxes, scores, class_ids, item, self.names, (width, height))


def pad_batch(batch: np.ndarray, size: int, fill: float) -> np.ndarray:
    """A model with a fixed batch of ``size`` gets the last chunk padded with ``fill``."""
    pad = np.full((size - len(batch), *batch.shape[1:]), fill, dtype=batch.dtype)
    return np.concatenate([batch, pad])
