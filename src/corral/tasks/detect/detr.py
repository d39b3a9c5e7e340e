"""DETR-family detectors exported to ONNX (RT-DETR, RF-DETR, DETR), run on ONNX Runtime.

DETR models predict a fixed *set* of boxes (one per query) trained not to repeat an
object, so there is no NMS: each query keeps its best class, boxes above the threshold
come back best first, capped at ``max_detections`` (``iou_threshold`` is not used).
Boxes are ``cx, cy, w, h`` normalised to 0-1 of the model's input; since the input is
the whole image resized (never padded), they map back by the original width and height.

Three export layouts, each pre-processed the way its own predictor does it:

* **RT-DETR as Ultralytics exports it** (``yolo export model=rtdetr-l.pt format=onnx``):
  one output ``[batch, queries, 4 + classes]``, boxes then per-class scores with the
  sigmoid already applied. Input: plain resize to the model's square input (Ultralytics'
  ``LetterBox(auto=False, scale_fill=True)``: no aspect kept, no padding), RGB, /255, no
  mean/std. Class names from the export's ``names`` metadata.
* **RF-DETR** (``model.export()``): outputs ``dets`` ``[batch, queries, 4]`` and
  ``labels`` ``[batch, queries, classes]`` as logits (sigmoid). Input: plain resize to
  the export's square resolution (RF-DETR's ``SquareResize``), /255, ImageNet mean/std.
  COCO checkpoints have 91 class columns indexed by COCO category id.
* **Hugging Face DETR** (``optimum-cli export onnx``, or ``torch.onnx.export`` of
  ``DetrForObjectDetection``): outputs ``logits`` ``[batch, queries, classes + 1]``
  (softmax; the last column is "no object", dropped) and ``pred_boxes``. Input: the
  ``DetrImageProcessor`` recipe: keep the aspect, shortest edge 800 and longest at most
  1333 (or what ``preprocessor_config.json`` says), /255, ImageNet mean/std; a
  ``pixel_mask`` input, when the export has one, is all ones (nothing is padded). An
  export with a fixed input size gets a plain resize to it. ``config.json`` next to the
  model gives ``id2label``, and its ``model_type`` picks softmax (``detr``,
  ``table-transformer``, ``yolos``) or sigmoid (Deformable/Conditional DETR, RT-DETR).

Resizing is OpenCV's bilinear everywhere (Ultralytics uses it too; PIL's and torchvision's
resamplers differ from it by a grey level or so at edges).

The family is told by the outputs (one: RT-DETR; ``dets``/``labels``: RF-DETR; else DETR);
``options.family`` (``rt-detr``, ``rf-detr``, ``detr``), ``options.scores``
(``probabilities``, ``sigmoid``, ``softmax``), ``options.normalize`` (``imagenet``,
``none``) and ``options.imgsz`` override. Class names: the config's ``labels:``, else
``id2label``, else the export's ``names`` metadata, else COCO's (80 or 91 columns).
RF-DETR's own post-processing takes a top-k over (query, class) pairs, so one query can
give two boxes of different classes; corral keeps each query's best class only.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from corral.errors import ExpertUnavailable
from corral.experts.base import require
from corral.experts.options import DetrOptions
from corral.tasks.detect.expert import (
    COCO91_NAMES,
    COCO_NAMES,
    DetectExpert,
    DetectItem,
    ImageDetections,
    ranked,
)
from corral.tasks.detect.yolo import input_size, names_from_metadata, onnx_session, pad_batch

__all__ = ["OnnxDetrDetector", "aspect_size"]

_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
_SOFTMAX_TYPES = frozenset({"detr", "table-transformer", "yolos"})
_FAMILIES = ("rt-detr", "rf-detr", "detr")
_SCORES = ("probabilities", "sigmoid", "softmax")
_BOX_OUTPUTS = ("dets", "pred_boxes", "boxes")
_MASK_TYPES: Mapping[str, Any] = {
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(float)": np.float32,
}


def aspect_size(height: int, width: int, shortest: int, longest: int | None) -> tuple[int, int]:
    """(height, width) with the shortest edge ``shortest`` and the longest at most
    ``longest``, as ``transformers.image_transforms.get_size_with_aspect_ratio`` does."""
    size, raw = shortest, None
    small, large = float(min(height, width)), float(max(height, width))
    if longest is not None and large / small * size > longest:
        raw = longest * small / large
        size = round(raw)
    if (height <= width and height == size) or (width <= height and width == size):
        return height, width
    scale = raw if raw is not None else size
    if width < height:
        return int(scale * height / width), size
    return size, int(scale * width / height)


@dataclass(frozen=True)
class _Recipe:
    """How one export wants its images and how its class outputs read."""

    family: str
    scores: str
    mean: np.ndarray | None  # per channel, for (pixels / 255 - mean) / std
    std: np.ndarray | None
    fixed: tuple[int, int] | None  # (height, width) of a plain resize; None: keep aspect
    shortest: int = 800
    longest: int | None = 1333


def _json_beside(file: Path, name: str) -> dict[str, Any]:
    """``config.json`` / ``preprocessor_config.json`` saved with a Hugging Face export."""
    path = file.parent / name
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExpertUnavailable(f"cannot read {path}: {exc}") from exc
    return data if isinstance(data, dict) else {}


def _choice(options: dict[str, Any], key: str, allowed: tuple[str, ...], default: str) -> str:
    value = str(options.get(key, default))
    if value not in allowed:
        raise ExpertUnavailable(f"options.{key} is {value!r}; use one of {', '.join(allowed)}")
    return value


def _scoring(
    options: dict[str, Any], outputs: list[str], hf_config: dict[str, Any]
) -> tuple[str, str]:
    """The family (told by the outputs) and how its class outputs become scores."""
    rf_names = "dets" in outputs or "labels" in outputs  # RF-DETR's export names
    guessed = "rt-detr" if len(outputs) == 1 else "rf-detr" if rf_names else "detr"
    family = _choice(options, "family", _FAMILIES, guessed)
    model_type = str(hf_config.get("model_type", "detr"))
    default_scores = {
        "rt-detr": "probabilities",
        "rf-detr": "sigmoid",
        "detr": "softmax" if model_type in _SOFTMAX_TYPES else "sigmoid",
    }[family]
    return family, _choice(options, "scores", _SCORES, default_scores)


def _recipe(
    options: dict[str, Any],
    outputs: list[str],
    image_shape: list[Any],
    metadata: dict[str, str],
    hf_config: dict[str, Any],
    processor: dict[str, Any],
) -> _Recipe:
    family, scores = _scoring(options, outputs, hf_config)
    plain = family == "rt-detr" or processor.get("do_normalize") is False
    normalize = _choice(options, "normalize", ("imagenet", "none"), "none" if plain else "imagenet")
    mean, std = _IMAGENET  # what preprocessor_config.json says, when there is one
    if processor.get("image_mean") and processor.get("image_std"):
        mean, std = tuple(processor["image_mean"]), tuple(processor["image_std"])
    size: dict[str, Any] = processor["size"] if isinstance(processor.get("size"), dict) else {}
    fixed = input_size(image_shape, metadata, options.get("imgsz"))
    if fixed is None and size.get("height") and size.get("width"):
        fixed = int(size["height"]), int(size["width"])  # e.g. Hugging Face's RT-DETR: 640 x 640
    return _Recipe(
        family=family,
        scores=scores,
        mean=np.asarray(mean, np.float32) if normalize == "imagenet" else None,
        std=np.asarray(std, np.float32) if normalize == "imagenet" else None,
        fixed=fixed,
        shortest=int(size.get("shortest_edge", 800)),
        longest=int(size["longest_edge"]) if size.get("longest_edge") else 1333,
    )


def _id2label(hf_config: dict[str, Any]) -> list[str] | None:
    """Hugging Face's ``{"0": "N/A", "1": "person", ...}`` as a list (gaps are "N/A")."""
    id2label = hf_config.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        return None
    try:
        table = {int(k): str(v) for k, v in id2label.items()}
    except ValueError:
        return None
    return [table.get(i, "N/A") for i in range(max(table) + 1)]


def _class_scores(logits: np.ndarray, how: str) -> np.ndarray:
    """``[queries, columns]`` to ``[queries, classes]`` probabilities."""
    if how == "sigmoid":
        return np.asarray(1.0 / (1.0 + np.exp(-logits)), np.float32)
    if how == "softmax":
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return np.asarray((shifted / shifted.sum(axis=-1, keepdims=True))[:, :-1], np.float32)
    return logits


class OnnxDetrDetector(DetectExpert):
    """Detect objects in images with a DETR-family model exported to ONNX."""

    options_model = DetrOptions
    backend = "onnx-detr"

    def load(self) -> None:
        options = self.context.options
        self.session, file = onnx_session(self.context)
        self._bind_inputs()
        outputs = {o.name: list(o.shape) for o in self.session.get_outputs()}
        self._bind_outputs(outputs)
        metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        hf_config = _json_beside(file, "config.json")
        self.recipe = _recipe(
            options,
            list(outputs),
            self.image_shape,
            metadata,
            hf_config,
            _json_beside(file, "preprocessor_config.json"),
        )
        self._name_classes(outputs, metadata, hf_config)

    def _bind_inputs(self) -> None:
        """The image input (rank 4) and an optional ``pixel_mask`` (rank 3)."""
        self.mask_name: str | None = None
        self.mask_dtype: Any = np.int64
        image = None
        for model_input in self.session.get_inputs():
            if len(model_input.shape) == 4 and image is None:
                image = model_input
            elif len(model_input.shape) == 3:
                self.mask_name = model_input.name
                self.mask_dtype = _MASK_TYPES.get(model_input.type, np.int64)
            else:
                raise ExpertUnavailable(
                    f"the model has an input {model_input.name!r} {model_input.shape} that is "
                    "neither the image [batch, 3, height, width] nor a pixel mask"
                )
        if image is None:
            raise ExpertUnavailable("the model has no image input [batch, 3, height, width]")
        self.input_name = image.name
        self.image_shape = list(image.shape)
        self.dtype = np.float16 if "float16" in image.type else np.float32
        batch = image.shape[0]
        # a fixed batch (Ultralytics and RF-DETR export batch 1) runs frame by frame
        self.fixed_batch = isinstance(batch, int)
        self.max_batch = (
            batch if isinstance(batch, int) else int(self.context.options.get("max_batch", 16))
        )

    def _bind_outputs(self, outputs: dict[str, list[Any]]) -> None:
        names = list(outputs)
        if len(names) == 1:
            self.boxes_name, self.logits_name = names[0], names[0]
            return
        if len(names) != 2:
            raise ExpertUnavailable(
                f"a DETR export has one output [batch, queries, 4 + classes] or two (boxes, "
                f"logits); this one has {len(names)}: {', '.join(names)}"
            )
        boxes = next((n for n in names if n in _BOX_OUTPUTS), None)
        boxes = boxes or next((n for n in names if outputs[n][-1:] == [4]), None)
        if boxes is None:
            raise ExpertUnavailable(f"cannot tell which of {names} holds the boxes [.., 4]")
        self.boxes_name = boxes
        self.logits_name = next(n for n in names if n != boxes)

    def _name_classes(
        self, outputs: dict[str, list[Any]], metadata: dict[str, str], hf_config: dict[str, Any]
    ) -> None:
        width = outputs[self.logits_name][-1]
        if isinstance(width, int) and self.logits_name == self.boxes_name:
            width -= 4
        columns = width - (self.recipe.scores == "softmax") if isinstance(width, int) else None
        from_config = _id2label(hf_config)
        coco = {80: list(COCO_NAMES), 91: list(COCO91_NAMES)}.get(columns or 0)
        names = self.context.spec.labels or from_config or names_from_metadata(metadata) or coco
        if names is None:
            raise ExpertUnavailable(
                f"the model scores {columns} classes: set `labels:` to their names, in order"
            )
        if columns is not None and len(names) != columns:
            raise ExpertUnavailable(
                f"the model scores {columns} classes but {len(names)} class names were given "
                f"({self.recipe.family}, {self.recipe.scores}): set `labels:` to one per class"
            )
        self.names = list(names)

    def unload(self) -> None:
        del self.session

    def _size_of(self, frame: np.ndarray) -> tuple[int, int]:
        if self.recipe.fixed is not None:
            return self.recipe.fixed
        height, width = frame.shape[:2]
        return aspect_size(height, width, self.recipe.shortest, self.recipe.longest)

    def _pixels(self, frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Resized (no padding), RGB, /255, mean/std when the family wants it; CHW."""
        cv2 = require("cv2", "vision")
        if frame.shape[:2] != size:
            frame = cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        pixels = frame.astype(np.float32) / 255.0
        if self.recipe.mean is not None and self.recipe.std is not None:
            pixels = (pixels - self.recipe.mean) / self.recipe.std
        return pixels.transpose(2, 0, 1)

    def forward(self, items: list[DetectItem]) -> list[ImageDetections]:
        """Images of one input size run together, in chunks of the model's batch."""
        by_size: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, item in enumerate(items):
            by_size[self._size_of(item.frame)].append(i)
        outputs: dict[int, ImageDetections] = {}
        for size, indices in by_size.items():
            for start in range(0, len(indices), self.max_batch):
                chunk = indices[start : start + self.max_batch]
                boxes, logits = self._run([self._pixels(items[i].frame, size) for i in chunk])
                for row, i in enumerate(chunk):
                    outputs[i] = self._decode(boxes[row], logits[row], items[i])
        return [outputs[i] for i in range(len(items))]

    def _run(self, frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        batch = np.stack(frames).astype(self.dtype)
        if self.fixed_batch and len(frames) < self.max_batch:
            batch = pad_batch(batch, self.max_batch, 0.0)
        feeds = {self.input_name: batch}
        if self.mask_name is not None:
            feeds[self.mask_name] = np.ones((len(batch), *batch.shape[2:]), self.mask_dtype)
        wanted = list(dict.fromkeys([self.boxes_name, self.logits_name]))
        results = dict(zip(wanted, self.session.run(wanted, feeds), strict=True))
        boxes = np.asarray(results[self.boxes_name], np.float32)
        logits = np.asarray(results[self.logits_name], np.float32)
        if self.boxes_name == self.logits_name:  # RT-DETR: [batch, queries, 4 + classes]
            return boxes[..., :4], logits[..., 4:]
        return boxes, logits

    def _decode(self, boxes: np.ndarray, logits: np.ndarray, item: DetectItem) -> ImageDetections:
        table = _class_scores(logits, self.recipe.scores)
        if item.classes is not None:  # each query's best class among those asked for
            table = np.where(np.isin(np.arange(table.shape[1]), list(item.classes)), table, -1.0)
        class_ids = table.argmax(axis=1)
        scores = table[np.arange(len(table)), class_ids]
        height, width = item.frame.shape[:2]
        centre, half = boxes[:, :2], boxes[:, 2:4] / 2
        corners = np.column_stack([centre - half, centre + half]) * [width, height, width, height]
        return ranked(corners, scores, class_ids, item, self.names, (width, height))
