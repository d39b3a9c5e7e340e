"""Object detection: what the detect backends share (input, results, class filter, NMS).

The backends (``detect_onnx``: YOLO exports on ONNX Runtime; ``detect_detr``: DETR-family
exports (RT-DETR, RF-DETR, DETR) on ONNX Runtime; ``detect_opencv``: OpenCV's HOG people
and Haar face detectors) differ only in ``load`` and ``forward``. Each item
is one image (a video frame), so the micro-batcher can put the frames of many requests
through one model call.

Images reach an expert in one of two ways: the HTTP route decodes the request's images
itself (base64, data-URL or multipart, off the event loop) and attaches the arrays with
``DetectInput.with_frames``; an LLM coordinator's tool call names uploads by id
(``file_ids``, see ``corral.uploads.files``), which ``prepare`` reads from the runtime's file store.
Images are never inlined in a prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, PrivateAttr

from corral.config import Task
from corral.errors import ExpertUnavailable, InvalidRequest
from corral.experts.base import Expert, require
from corral.experts.operation import Operation
from corral.uploads.images import check_image_count, decode_images

__all__ = [
    "COCO91_NAMES",
    "COCO_NAMES",
    "DETECT",
    "DetectExpert",
    "DetectInput",
    "Detection",
    "ImageDetections",
    "nms",
    "ranked",
]

# the 80 COCO classes in the order YOLO models trained on COCO number them
_COCO = (
    "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant "
    "stop_sign parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe "
    "backpack umbrella handbag tie suitcase frisbee skis snowboard sports_ball kite "
    "baseball_bat baseball_glove skateboard surfboard tennis_racket bottle wine_glass cup fork "
    "knife spoon bowl banana apple sandwich orange broccoli carrot hot_dog pizza donut cake "
    "chair couch potted_plant bed dining_table toilet tv laptop mouse remote keyboard "
    "cell_phone microwave oven toaster sink refrigerator book clock vase scissors teddy_bear "
    "hair_drier toothbrush"
)
COCO_NAMES: tuple[str, ...] = tuple(n.replace("_", " ") for n in _COCO.split())

# COCO's category ids (1-90 with gaps), which DETR and RF-DETR checkpoints trained on COCO
# index their 91 class columns by; unused ids are "N/A", as in Hugging Face's id2label
_COCO_GAPS = frozenset({0, 12, 26, 29, 30, 45, 66, 68, 69, 71, 83})
COCO91_NAMES: tuple[str, ...] = tuple(
    "N/A" if i in _COCO_GAPS else COCO_NAMES[i - 1 - sum(g < i for g in _COCO_GAPS if g)]
    for i in range(91)
)


class DetectInput(BaseModel):
    """Detect objects in uploaded images (ids from POST /v1/files)."""

    file_ids: list[str] = Field(
        min_length=1, max_length=64, description="Ids of images uploaded with POST /v1/files."
    )
    classes: list[str] | None = Field(
        None, min_length=1, max_length=1000, description="Only these labels; omitted: all."
    )
    score_threshold: float = Field(0.25, ge=0.0, le=1.0, description="Drop boxes scoring less.")
    iou_threshold: float = Field(
        0.45,
        ge=0.0,
        le=1.0,
        description="Merge same-label boxes overlapping more (NMS; DETR backends: unused).",
    )
    max_detections: int = Field(100, ge=1, le=1000, description="Most boxes per image.")

    _frames: list[np.ndarray] | None = PrivateAttr(None)
    _params: list[str] = PrivateAttr(default_factory=list)

    @classmethod
    def with_frames(
        cls, frames: Sequence[np.ndarray], params: Sequence[str], **options: Any
    ) -> DetectInput:
        """A request whose images are already decoded (by the HTTP route): no file ids."""
        request = cls.model_construct(file_ids=[], **options)
        request._frames = list(frames)
        request._params = list(params)
        return request


@dataclass(frozen=True)
class Detection:
    box: list[float]  # [x1, y1, x2, y2] in the original image's pixels
    label: str
    score: float


@dataclass(frozen=True)
class ImageDetections:
    width: int
    height: int
    detections: list[Detection]


@dataclass(frozen=True)
class DetectItem:
    """One image of a request, with what that request asked for."""

    frame: np.ndarray  # [height, width, 3] uint8 RGB
    param: str  # where it came from, for error messages
    classes: frozenset[int] | None  # indices into the expert's names; None: all
    score_threshold: float
    iou_threshold: float
    max_detections: int


DETECT = Operation(Task.DETECT, DetectInput, list[ImageDetections])


class DetectExpert(Expert[DetectInput, DetectItem, ImageDetections, list[ImageDetections]]):
    """Base of the detect backends: ``load`` sets ``names`` (label of each class index)."""

    task = Task.DETECT
    operation = DETECT
    uses_torch = False  # ONNX Runtime and OpenCV run their own thread pools
    names: list[str]

    @property
    def labels(self) -> list[str] | None:
        return list(self.names)

    def prepare(self, request: DetectInput) -> list[DetectItem]:
        """Validate on the caller's own request, so a bad one never fails a batch."""
        frames, params = self._frames_of(request)
        classes = self._class_ids(request.classes)
        return [
            DetectItem(
                frame,
                param,
                classes,
                request.score_threshold,
                request.iou_threshold,
                request.max_detections,
            )
            for frame, param in zip(frames, params, strict=True)
        ]

    def prepare_blocks(self, request: DetectInput) -> bool:
        return request._frames is None  # uploaded files are read and decoded here

    def finish(self, request: DetectInput, outputs: list[ImageDetections]) -> list[ImageDetections]:
        return outputs

    def _frames_of(self, request: DetectInput) -> tuple[list[np.ndarray], list[str]]:
        if request._frames is not None:
            return request._frames, request._params
        files, limits = self.context.files, self.context.limits
        if files is None:
            raise ExpertUnavailable("this runtime keeps no uploaded files")
        check_image_count(len(request.file_ids), limits, param="file_ids")
        params = [f"file_ids[{i}]" for i in range(len(request.file_ids))]
        # every image limit, as over HTTP: the count, each image's and all images' pixels
        blobs = [(files.get(f, param=p), p) for f, p in zip(request.file_ids, params, strict=True)]
        return decode_images(blobs, limits), params

    def _class_ids(self, classes: list[str] | None) -> frozenset[int] | None:
        if classes is None:
            return None
        index = {name: i for i, name in enumerate(self.names)}
        for i, name in enumerate(classes):
            if name not in index:
                shown = ", ".join(self.names[:20]) + (" ..." if len(self.names) > 20 else "")
                raise InvalidRequest(
                    f"classes[{i}] is {name[:100]!r}; {self.context.spec.name!r} detects: {shown}",
                    param=f"classes[{i}]",
                )
        wanted = set(classes)
        return frozenset(i for i, name in enumerate(self.names) if name in wanted)


def _filtered(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    item: DetectItem,
    size: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The boxes above the item's score threshold and of its classes, clipped to the
    image (``size`` is width, height); boxes left with no area are dropped."""
    width, height = size
    keep = scores > item.score_threshold
    if item.classes is not None:
        keep &= np.isin(class_ids, np.fromiter(item.classes, dtype=np.int64))
    boxes, scores, class_ids = boxes[keep], scores[keep], class_ids[keep]
    boxes = np.clip(boxes, 0, [width, height, width, height])
    inside = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # not all in the padding
    return boxes[inside], scores[inside], class_ids[inside]


def _detections(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    order: np.ndarray,
    names: Sequence[str],
    size: tuple[int, int],
) -> ImageDetections:
    return ImageDetections(
        size[0],
        size[1],
        [
            Detection(
                box=[round(float(v), 2) for v in boxes[i]],
                label=names[int(class_ids[i])],
                score=float(scores[i]),
            )
            for i in order
        ],
    )


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    item: DetectItem,
    names: Sequence[str],
    size: tuple[int, int],
) -> ImageDetections:
    """Class-wise non-maximum suppression (OpenCV's ``NMSBoxesBatched``) of ``[n, 4]``
    ``x1, y1, x2, y2`` boxes already in original pixels, then the item's thresholds and
    cap; boxes are clipped to the image (``size`` is width, height)."""
    cv2 = require("cv2", "vision")
    boxes, scores, class_ids = _filtered(boxes, scores, class_ids, item, size)
    if len(scores) == 0:
        return ImageDetections(size[0], size[1], [])
    xywh = np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]).astype(np.float64)
    picked = cv2.dnn.NMSBoxesBatched(
        xywh, scores.astype(np.float32), class_ids.astype(np.int32), 0.0, item.iou_threshold
    )
    order = np.asarray(picked, dtype=np.int64).reshape(-1)
    order = order[np.argsort(-scores[order], kind="stable")][: item.max_detections]
    return _detections(boxes, scores, class_ids, order, names, size)


def ranked(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    item: DetectItem,
    names: Sequence[str],
    size: tuple[int, int],
) -> ImageDetections:
    """What ``nms`` does without the suppression, for set-based detectors (DETR) whose
    queries are trained not to repeat one object: threshold, classes, clip, best first,
    capped at ``max_detections``."""
    boxes, scores, class_ids = _filtered(boxes, scores, class_ids, item, size)
    order = np.argsort(-scores, kind="stable")[: item.max_detections]
    return _detections(boxes, scores, class_ids, order, names, size)
