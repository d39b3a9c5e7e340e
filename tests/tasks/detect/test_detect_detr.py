"""``POST /v1/detect`` with ``backend: onnx-detr`` over real HTTP: three DETR export
layouts (Ultralytics RT-DETR, RF-DETR, Hugging Face DETR) as planted-output ONNX models
exported by the test. A probe query's scores are computed from the pixels the model was
given, so the pre-processing of each family (plain resize, /255, ImageNet mean/std,
aspect-kept resize for DETR) shows in the answer; planted boxes come back in the
original image's pixels; no NMS; thresholds, classes and the cap."""

from __future__ import annotations

import base64
import io
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from corral.config import parse_config
from tests._server import RunningServer, serve

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
COLOUR = (200, 100, 50)  # every test image is this colour, so its channel means are known

# RT-DETR (Ultralytics): normalised cx, cy, w, h, then person, car, dog probabilities
RTDETR = [
    (0.50, 0.50, 0.20, 0.10, 0.90, 0.0, 0.0),  # person
    (0.51, 0.50, 0.20, 0.10, 0.85, 0.0, 0.0),  # the same spot again: kept (no NMS)
    (0.10, 0.20, 0.10, 0.20, 0.0, 0.60, 0.30),  # a car, also a little dog
    (0.95, 0.50, 0.20, 0.20, 0.0, 0.0, 0.50),  # a dog running past the right edge
    (0.30, 0.30, 0.10, 0.10, 0.10, 0.0, 0.0),  # below the default threshold
]
PROBE = (0.50, 0.80, 0.10, 0.10)  # the last query: its scores are the input's channel means


def _export(module: Any, path: Path, inputs: tuple[Any, ...], **names: Any) -> Path:
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated, and fine here
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module.eval(), inputs, str(path), dynamo=False, **names)
    return path


def _rtdetr(folder: Path) -> Path:
    """Ultralytics' layout: ``images`` -> ``output0`` ``[batch, queries, 4 + 3]``, sigmoid
    applied; its ``names`` metadata says the classes."""
    import onnx

    planted = torch.tensor(RTDETR, dtype=torch.float32)

    class Planted(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("planted", planted)
            self.register_buffer("probe", torch.tensor(PROBE))

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            batch = images.shape[0]
            probe = torch.cat([self.probe.expand(batch, 4), images.mean(dim=(2, 3))], dim=1)
            return torch.cat([self.planted.expand(batch, -1, -1), probe.unsqueeze(1)], dim=1)

    path = _export(
        Planted(),
        folder / "rtdetr-l.onnx",
        (torch.zeros(1, 3, 640, 640),),
        input_names=["images"],
        output_names=["output0"],
        dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}},
    )
    model = onnx.load(str(path))
    entry = model.metadata_props.add()
    entry.key, entry.value = "names", str({0: "person", 1: "car", 2: "dog"})
    onnx.save(model, str(path))
    return path


def _rfdetr(folder: Path) -> Path:
    """RF-DETR's layout: ``input`` (fixed 1 x 3 x 56 x 56) -> ``dets`` boxes and ``labels``
    logits over COCO's 91 category ids; the probe's person, bicycle and car logits are
    the channel means of the normalised input."""
    logits = torch.full((3, 91), -10.0)
    logits[0, 3] = 2.0  # a car (COCO id 3)
    logits[1, 18] = 0.0  # a dog (id 18) at sigmoid 0.5
    boxes = torch.tensor([(0.25, 0.50, 0.30, 0.40), (0.75, 0.25, 0.10, 0.10), PROBE])

    class Planted(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("boxes", boxes)
            self.register_buffer("logits", logits)

        def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            means = images.mean(dim=(2, 3))  # [1, 3]
            probe = torch.cat([torch.full((1, 1), -10.0), means, torch.full((1, 87), -10.0)], 1)
            scores = torch.cat([self.logits[:2].unsqueeze(0), probe.unsqueeze(1)], dim=1)
            return self.boxes.unsqueeze(0) + 0 * means[:, :1, None], scores  # not a constant

    return _export(
        Planted(),
        folder / "inference_model.onnx",
        (torch.zeros(1, 3, 56, 56),),
        input_names=["input"],
        output_names=["dets", "labels"],
    )


def _hf_detr(folder: Path) -> Path:
    """Hugging Face DETR's layout: ``pixel_values`` (any size) and ``pixel_mask`` ->
    ``logits`` (3 classes + no-object, softmax) and ``pred_boxes``; ``config.json`` holds
    ``id2label``. The probe's logits are the input's height / 1000, width / 1000 and the
    red channel's normalised mean, so the size the image was resized to shows."""
    logits = torch.tensor([(5.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 5.0)])  # a cat; nothing
    boxes = torch.tensor([(0.50, 0.50, 0.50, 0.50), (0.20, 0.20, 0.10, 0.10), PROBE])

    class Planted(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("boxes", boxes)
            self.register_buffer("logits", logits)

        def forward(self, pixels: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
            batch = pixels.shape[0]
            height = torch.ones_like(pixels[:, 0, :, 0]).sum(dim=1, keepdim=True)
            width = torch.ones_like(pixels[:, 0, 0, :]).sum(dim=1, keepdim=True)
            red = pixels[:, 0].mean(dim=(1, 2)).unsqueeze(1)
            masked = mask.float().mean(dim=(1, 2)).unsqueeze(1) - 1  # 0 when nothing is padded
            probe = torch.cat([height / 1000, width / 1000, red, masked], dim=1)
            scores = torch.cat([self.logits.expand(batch, -1, -1), probe.unsqueeze(1)], dim=1)
            return scores, self.boxes.expand(batch, -1, -1)

    path = _export(
        Planted(),
        folder / "model.onnx",
        (torch.zeros(1, 3, 800, 1066), torch.ones(1, 800, 1066, dtype=torch.int64)),
        input_names=["pixel_values", "pixel_mask"],
        output_names=["logits", "pred_boxes"],
        dynamic_axes={
            "pixel_values": {0: "batch", 2: "height", 3: "width"},
            "pixel_mask": {0: "batch", 1: "height", 2: "width"},
            "logits": {0: "batch"},
            "pred_boxes": {0: "batch"},
        },
    )
    config = {"model_type": "detr", "id2label": {"0": "cat", "1": "dog", "2": "bird"}}
    (folder / "config.json").write_text(json.dumps(config))
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    rtdetr = _rtdetr(tmp_path_factory.mktemp("rtdetr"))
    rfdetr = _rfdetr(tmp_path_factory.mktemp("rfdetr"))
    hf = _hf_detr(tmp_path_factory.mktemp("detr")).parent
    config = f"""
models:
  - {{name: rtdetr, model: ultralytics/rtdetr-l, path: {rtdetr}, default: true}}
  - {{name: rfdetr, model: acme/rf-detr, task: detect, backend: onnx-detr, path: {rfdetr}}}
  - {{name: detr, model: acme/detr, task: detect, backend: onnx-detr, path: {hf}}}
  - {{name: miscounted, model: acme/x, task: detect, backend: onnx-detr, path: {rtdetr}, labels: [a, b]}}
  - {{name: misnamed, model: acme/y, task: detect, backend: onnx-detr, path: {rtdetr}, options: {{family: yolo}}}}
"""
    with serve(parse_config(config)) as running:
        yield running


def _b64(width: int, height: int) -> str:
    pixels = np.broadcast_to(np.array(COLOUR, dtype=np.uint8), (height, width, 3)).copy()
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def _detect(server: RunningServer, **body: Any) -> list[dict[str, Any]]:
    reply = httpx.post(server.v1 + "/detect", json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    return list(reply.json()["data"])


def _found(data: dict[str, Any]) -> list[tuple[str, list[float], float]]:
    return [(d["label"], d["box"], round(d["score"], 4)) for d in data["detections"]]


def _same(data: dict[str, Any], expected: list[tuple[str, list[float], float]]) -> None:
    """Labels exactly, boxes to the hundredth of a pixel, scores to 1e-3 (ONNX Runtime
    sums a probe's channel means in float32)."""
    found = data["detections"]
    assert [d["label"] for d in found] == [label for label, _, _ in expected], found
    np.testing.assert_allclose([d["box"] for d in found], [b for _, b, _ in expected], atol=0.011)
    np.testing.assert_allclose([d["score"] for d in found], [s for _, _, s in expected], atol=1e-3)


def test_rtdetr_boxes_come_back_in_original_pixels_without_nms(server: RunningServer) -> None:
    (data,) = _detect(server, image=_b64(1280, 720), iou_threshold=0.1)
    assert (data["width"], data["height"]) == (1280, 720)
    # plain resize, no padding: the probe's scores are exactly the colour / 255
    red = COLOUR[0] / 255
    _same(
        data,
        [
            ("person", [512.0, 324.0, 768.0, 396.0], 0.9),
            ("person", [524.8, 324.0, 780.8, 396.0], 0.85),  # IoU 0.9 with the first: kept
            ("person", [576.0, 540.0, 704.0, 612.0], red),  # the probe
            ("car", [64.0, 72.0, 192.0, 216.0], 0.6),
            ("dog", [1088.0, 288.0, 1280.0, 432.0], 0.5),  # x2 1344 clipped to the width
        ],
    )


def test_thresholds_classes_and_cap(server: RunningServer) -> None:
    image = _b64(640, 480)

    def labels(**options: Any) -> list[tuple[str, float]]:
        (data,) = _detect(server, image=image, **options)
        return [(label, round(score, 2)) for label, _, score in _found(data)]

    assert labels(max_detections=2) == [("person", 0.9), ("person", 0.85)]
    assert labels(score_threshold=0.7) == [("person", 0.9), ("person", 0.85), ("person", 0.78)]
    # among the requested classes only: the car query's dog score, the probe's blue mean
    assert labels(classes=["dog"]) == [("dog", 0.5), ("dog", 0.3)]
    assert labels(classes=["dog"], score_threshold=0.1) == [
        ("dog", 0.5),
        ("dog", 0.3),
        ("dog", 0.2),
    ]
    assert labels(classes=["car", "dog"], max_detections=3) == [
        ("car", 0.6),
        ("dog", 0.5),
        ("car", 0.39),
    ]
    assert labels(score_threshold=1.0) == []
    unknown = httpx.post(server.v1 + "/detect", json={"image": image, "classes": ["cat"]})
    assert unknown.status_code == 422 and unknown.json()["error"]["param"] == "classes[0]"


def test_rfdetr_sigmoid_imagenet_and_coco_ids(server: RunningServer) -> None:
    images = [_b64(300, 200), _b64(100, 400)]  # batch 1 export: run one by one
    data = _detect(server, model="rfdetr", images=images, score_threshold=0.4)
    normalised = (np.array(COLOUR) / 255 - MEAN) / STD
    person, bicycle, _ = 1 / (1 + np.exp(-normalised))
    for (width, height), one in zip(((300, 200), (100, 400)), data, strict=True):
        _same(
            one,
            [
                ("car", [0.1 * width, 0.3 * height, 0.4 * width, 0.7 * height], 0.8808),
                ("person", [0.45 * width, 0.75 * height, 0.55 * width, 0.85 * height], person),
                ("dog", [0.7 * width, 0.2 * height, 0.8 * width, 0.3 * height], 0.5),
            ],
        )
    # COCO's 91 ids: the probe's bicycle column scores the normalised green mean
    (one,) = _detect(
        server, model="rfdetr", image=images[0], classes=["bicycle"], score_threshold=0.1
    )
    _same(one, [("bicycle", [0.45 * 300, 0.75 * 200, 0.55 * 300, 0.85 * 200], bicycle)])


def _hf_input_size(width: int, height: int) -> tuple[int, int]:
    """The size transformers' own DetrImageProcessor resizes this image to."""
    from transformers import DetrImageProcessorPil

    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    shape = DetrImageProcessorPil()(pixels, return_tensors="np")["pixel_values"].shape
    return int(shape[2]), int(shape[3])


def test_hf_detr_softmax_keeps_the_aspect_as_detr_image_processor_does(
    server: RunningServer,
) -> None:
    sizes = [(1280, 720), (500, 900), (1280, 720)]  # two input sizes in one request
    data = _detect(server, model="detr", images=[_b64(w, h) for w, h in sizes], score_threshold=0.0)
    red = (COLOUR[0] / 255 - MEAN[0]) / STD[0]
    for (width, height), one in zip(sizes, data, strict=True):
        in_h, in_w = _hf_input_size(width, height)
        probe = np.exp([in_h / 1000, in_w / 1000, red, 0.0])
        probe /= probe.sum()
        cat = np.exp(5) / (np.exp(5) + 3)
        # the probe's best real class (no-object dropped) is the longer side over 1000
        longer = ("cat", probe[0]) if in_h > in_w else ("dog", probe[1])
        _same(
            one,
            [
                ("cat", [0.25 * width, 0.25 * height, 0.75 * width, 0.75 * height], cat),
                (longer[0], [0.45 * width, 0.75 * height, 0.55 * width, 0.85 * height], longer[1]),
                (
                    "cat",
                    [0.15 * width, 0.15 * height, 0.25 * width, 0.25 * height],
                    1 / (np.exp(5) + 3),
                ),
            ],
        )
    assert [_hf_input_size(w, h) for w, h in sizes[:2]] == [(750, 1333), (1333, 741)]
    default = _detect(server, model="detr", image=_b64(1280, 720), score_threshold=0.5)
    assert [label for label, _, _ in _found(default[0])] == ["cat"]


def test_class_names_that_do_not_fit_the_model_are_a_clear_503(server: RunningServer) -> None:
    reply = httpx.post(server.v1 + "/detect", json={"model": "miscounted", "image": _b64(64, 64)})
    assert reply.status_code == 503, reply.text
    message = reply.json()["error"]["message"]
    assert "the model scores 3 classes but 2 class names were given" in message
    reply = httpx.post(server.v1 + "/detect", json={"model": "misnamed", "image": _b64(64, 64)})
    assert reply.status_code == 503, reply.text
    assert "options.family is 'yolo'; use one of rt-detr, rf-detr, detr" in reply.json()["error"]["message"]
    assert httpx.get(server.url + "/healthz").status_code == 200
