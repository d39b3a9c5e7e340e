"""Object detection: YOLO and DETR exports on ONNX Runtime, OpenCV's built-in detectors."""

from __future__ import annotations

from corral.config import Task
from corral.tasks.family import Backend, TaskFamily

FAMILY = TaskFamily(
    name="detect",
    backends=(
        Backend(
            Task.DETECT,
            "onnx-yolo",
            "corral.tasks.detect.yolo:OnnxYoloDetector",
            ("onnxruntime", "cv2"),
            "vision",
        ),
        Backend(
            Task.DETECT,
            "onnx-detr",
            "corral.tasks.detect.detr:OnnxDetrDetector",
            ("onnxruntime", "cv2"),
            "vision",
        ),
        Backend(
            Task.DETECT, "opencv", "corral.tasks.detect.opencv:OpenCvDetector", ("cv2",), "vision"
        ),
    ),
    defaults={Task.DETECT: "onnx-yolo"},
    routes=("corral.tasks.detect.api", "corral.uploads.api"),
    tools=frozenset({Task.DETECT}),
)
