"""Detectors that ship inside ``opencv-python-headless`` (<5): real detection with no
model download, the offline default.

* ``person``: the HOG + linear SVM pedestrian detector (Dalal and Triggs), upright
  people at least 64 x 128 pixels (after ``max_side`` scaling).
* ``face``: the Haar frontal-face cascade (Viola and Jones), ``cv2.data.haarcascades``.

Scores: neither detector gives a probability. A person's score is the logistic of its
SVM margin (margin 0 -> 0.5); a face's is ``1 - 0.5 ** (neighbours / min_neighbors)``,
from how many overlapping raw hits the cascade merged into it (``min_neighbors`` hits ->
0.5). Both rank detections; neither is calibrated.

Options: ``detectors`` (``[person, face]``; the catalog id implies one), ``max_side``
(images are scaled down to this longest side first, for speed: 800), ``hog_scale``
(1.05), ``hog_stride`` (8), ``face_scale`` (1.1), ``min_neighbors`` (5),
``min_face`` (24 pixels).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from corral.errors import ExpertUnavailable
from corral.experts.base import require
from corral.experts.options import OpenCvDetectorOptions
from corral.tasks.detect.expert import DetectExpert, DetectItem, ImageDetections, nms

__all__ = ["DETECTORS", "OpenCvDetector"]

DETECTORS = ("person", "face")
_IMPLIED: dict[str, list[str]] = {"opencv/hog-person": ["person"], "opencv/haar-face": ["face"]}


class OpenCvDetector(DetectExpert):
    """Detect people (HOG) and faces (Haar cascade) in images with OpenCV."""

    options_model = OpenCvDetectorOptions
    backend = "opencv"

    def load(self) -> None:
        cv2 = require("cv2", "vision")
        self.cv2 = cv2
        options = self.context.options
        implied = _IMPLIED.get(self.context.spec.model, list(DETECTORS))
        chosen: list[str] = list(options.get("detectors") or implied)
        unknown = [d for d in chosen if d not in DETECTORS]
        if unknown or not chosen:
            raise ExpertUnavailable(
                f"options.detectors must name some of {', '.join(DETECTORS)}: {unknown}"
            )
        self.names = list(dict.fromkeys(chosen))
        self.max_side = int(options.get("max_side", 800))
        self.hog: Any = None
        self.face: Any = None
        if "person" in self.names:
            self.hog = cv2.HOGDescriptor()
            self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        if "face" in self.names:
            path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
            self.face = cv2.CascadeClassifier(path)
            if self.face.empty():
                raise ExpertUnavailable(f"OpenCV could not read its face cascade at {path}")

    def unload(self) -> None:
        self.hog = self.face = None

    def forward(self, items: list[DetectItem]) -> list[ImageDetections]:
        return [self._detect(item) for item in items]

    def _detect(self, item: DetectItem) -> ImageDetections:
        cv2 = self.cv2
        height, width = item.frame.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        frame = item.frame
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        wanted = item.classes
        boxes: list[np.ndarray] = []
        scores: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        for label, name in enumerate(self.names):
            if wanted is not None and label not in wanted:
                continue
            rects, score = self._person(frame) if name == "person" else self._faces(frame)
            boxes.append(rects)
            scores.append(score)
            labels.append(np.full(len(score), label, dtype=np.int64))
        if not boxes:
            return ImageDetections(width, height, [])
        xywh = np.concatenate(boxes).reshape(-1, 4).astype(np.float64) / scale
        xyxy = np.column_stack([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]])
        found = np.concatenate(scores), np.concatenate(labels)
        return nms(xyxy, *found, item, self.names, (width, height))

    def _person(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        options = self.context.options
        if frame.shape[0] < 128 or frame.shape[1] < 64:  # smaller than one HOG window
            return np.zeros((0, 4)), np.zeros(0)
        stride = int(options.get("hog_stride", 8))
        rects, weights = self.hog.detectMultiScale(
            frame,
            winStride=(stride, stride),
            padding=(8, 8),
            scale=float(options.get("hog_scale", 1.05)),
        )
        margins = np.asarray(weights, dtype=np.float64).reshape(-1)
        return np.asarray(rects).reshape(-1, 4), 1.0 / (1.0 + np.exp(-margins))

    def _faces(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cv2, options = self.cv2, self.context.options
        gray = cv2.equalizeHist(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))
        neighbours = int(options.get("min_neighbors", 5))
        smallest = int(options.get("min_face", 24))
        rects, counts = self.face.detectMultiScale2(
            gray,
            scaleFactor=float(options.get("face_scale", 1.1)),
            minNeighbors=neighbours,
            minSize=(smallest, smallest),
        )
        hits = np.asarray(counts, dtype=np.float64).reshape(-1)
        return np.asarray(rects).reshape(-1, 4), 1.0 - 0.5 ** (hits / max(1, neighbours))
