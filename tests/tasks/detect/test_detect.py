"""``POST /v1/detect`` over real HTTP: YOLO-layout ONNX models with planted outputs (built
and exported by the test) check letterboxing, box mapping, NMS and filters to the pixel;
OpenCV's HOG and Haar detectors find a real face and a real person; uploads by id."""

from __future__ import annotations

import base64
import io
import os
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from corral.config import parse_config
from tests._server import RunningServer, serve

NAMES = {0: "person", 1: "car", 2: "dog"}
# planted anchors in a 640 x 640 input's pixels (scaled to other inputs): cx, cy, w, h, then
# person, car, dog scores
PLANTED = [
    (320, 320, 100, 50, 0.9, 0.0, 0.0),  # person -> kept
    (324, 322, 100, 50, 0.8, 0.0, 0.0),  # the same person again (IoU 0.86): merged by NMS
    (320, 320, 100, 50, 0.0, 0.7, 0.0),  # a car on the same spot: kept (NMS is per class)
    (100, 250, 40, 40, 0.0, 0.0, 0.3),  # a faint dog
    (600, 200, 100, 100, 0.0, 0.5, 0.0),  # a car running past the right edge: clipped
    (400, 400, 60, 60, 0.1, 0.0, 0.0),  # below the default threshold
]
PROBE_BOX = (320, 330, 20, 20)  # the last anchor: its class scores are the channel means


def _scaled(box: tuple[float, ...], height: int, width: int) -> tuple[float, ...]:
    cx, cy, w, h = box
    return (cx * width / 640, cy * height / 640, w * width / 640, h * height / 640)


def _export(folder: Path, *, height: int, width: int, dynamic: bool) -> Path:
    """A YOLO-layout model ``[batch, 4 + 3, anchors]``: the planted anchors, 200 empty
    ones, and a probe whose three class scores are the mean of each input channel, so
    the letterbox (grey 114 padding, RGB order, /255) shows in the output."""
    import onnx
    import torch

    planted = np.zeros((7, len(PLANTED) + 200), dtype=np.float32)
    planted[:, : len(PLANTED)] = np.array(PLANTED, dtype=np.float32).T
    planted[:4, : len(PLANTED)] = np.array([_scaled(a[:4], height, width) for a in PLANTED]).T

    class Planted(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("planted", torch.from_numpy(planted))
            probe_box = _scaled(PROBE_BOX, height, width)
            self.register_buffer("probe", torch.tensor(probe_box, dtype=torch.float32))

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            batch = images.shape[0]
            probe = torch.cat([self.probe.expand(batch, 4), images.mean(dim=(2, 3))], dim=1)
            return torch.cat([self.planted.expand(batch, -1, -1), probe.unsqueeze(-1)], dim=2)

    path = folder / "model.onnx"
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated, and fine here
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            Planted().eval(),
            (torch.zeros(1, 3, height, width),),
            str(path),
            input_names=["images"],
            output_names=["output0"],
            dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}} if dynamic else None,
            dynamo=False,
        )
    model = onnx.load(str(path))
    for key, value in (("names", str(NAMES)), ("imgsz", f"[{height}, {width}]")):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


def _export_end_to_end(folder: Path) -> Path:
    """An end-to-end export's layout (YOLOv10, ``nms=True``): ``[batch, boxes, 6]`` of
    x1, y1, x2, y2, score, class in letterboxed pixels, already suppressed."""
    import onnx
    from onnx import helper, numpy_helper

    boxes = np.zeros((1, 10, 6), dtype=np.float32)
    boxes[0, 0] = (270, 295, 370, 345, 0.9, 2)  # a dog
    boxes[0, 1] = (10, 150, 50, 190, 0.2, 0)  # a faint person
    constant = numpy_helper.from_array(boxes, "boxes")
    graph = helper.make_graph(
        [
            helper.make_node("Shape", ["images"], ["shape"], start=0, end=1),
            helper.make_node("Concat", ["shape", "tail"], ["full"], axis=0),
            helper.make_node("Expand", ["boxes", "full"], ["output0"]),
        ],
        "end_to_end",
        [helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, ["batch", 3, 640, 640])],
        [helper.make_tensor_value_info("output0", onnx.TensorProto.FLOAT, ["batch", 10, 6])],
        [constant, numpy_helper.from_array(np.array([10, 6], dtype=np.int64), "tail")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / "e2e.onnx"
    onnx.save(model, str(path))
    return path


def _darknet_photo(name: str) -> Path | None:
    """Debian's darknet package ships real photos; .ci/run unpacks them into the cache."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    for root in (Path("/usr/share/darknet/data"), cache / "corral-test-data/darknet/usr/share/darknet/data"):
        if (root / name).is_file():
            return root / name
    return None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    dynamic = _export(tmp_path_factory.mktemp("yolo"), height=640, width=640, dynamic=True)
    fixed_dir = tmp_path_factory.mktemp("fixed")
    _export(fixed_dir, height=320, width=480, dynamic=False)
    end_to_end = _export_end_to_end(tmp_path_factory.mktemp("e2e"))
    config = f"""
models:
  - {{name: yolo, model: ultralytics/yolov12n, path: {dynamic}, default: true, batch: {{max_wait_ms: 30}}}}
  - {{name: fixed, model: acme/planted, task: detect, path: {fixed_dir}, labels: [a, b, c]}}
  - {{name: e2e, model: acme/e2e, task: detect, backend: onnx-yolo, path: {end_to_end}}}
  - {{name: people, model: opencv/people}}
  - {{name: faces, model: opencv/haar-face}}
server:
  limits: {{max_images: 6, max_image_pixels: 4000000, max_file_bytes: 300000, max_body_bytes: 2000000}}
"""
    with serve(parse_config(config)) as running:
        yield running


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def _b64(pixels: np.ndarray) -> str:
    return base64.b64encode(_png(pixels)).decode()


def _solid(width: int, height: int, rgb: tuple[int, int, int]) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, dtype=np.uint8), (height, width, 3)).copy()


def _detect(server: RunningServer, **body: Any) -> dict[str, Any]:
    reply = httpx.post(server.v1 + "/detect", json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def _expected(box: tuple[float, ...], width: int, height: int, size: tuple[int, int]) -> list[float]:
    """Ultralytics' letterbox arithmetic, written out: centre/size -> corners, minus the
    padding, over the scale, clipped to the image."""
    target_h, target_w = size
    scale = min(target_h / height, target_w / width)
    left = round((target_w - round(width * scale)) / 2 - 0.1)
    top = round((target_h - round(height * scale)) / 2 - 0.1)
    cx, cy, w, h = box
    corners = np.array([cx - w / 2 - left, cy - h / 2 - top, cx + w / 2 - left, cy + h / 2 - top])
    return list(np.clip(corners / scale, 0, [width, height, width, height]))


def test_planted_boxes_come_back_in_original_pixels(server: RunningServer) -> None:
    # 1280 x 720: scale 0.5, 140 grey rows above and below; worked by hand below
    reply = _detect(server, image=_b64(_solid(1280, 720, (255, 0, 0))))
    assert reply["model"] == "yolo" and reply["object"] == "list"
    (data,) = reply["data"]
    assert (data["width"], data["height"]) == (1280, 720)
    found = [(d["label"], d["box"]) for d in data["detections"]]
    assert found == [
        ("person", [540.0, 310.0, 740.0, 410.0]),
        ("person", [620.0, 360.0, 660.0, 400.0]),  # the probe
        ("car", [540.0, 310.0, 740.0, 410.0]),
        ("car", [1100.0, 20.0, 1280.0, 220.0]),  # x2 1300 clipped to the width
        ("dog", [160.0, 180.0, 240.0, 260.0]),
    ]
    # the probe: red's mean over the letterbox is (360 + 280 * 114/255) / 640 = 0.7581
    scores = [d["score"] for d in data["detections"]]
    np.testing.assert_allclose(scores, [0.9, 0.7581, 0.7, 0.5, 0.3], atol=1e-3)


@pytest.mark.parametrize("model", ["yolo", "fixed"])
def test_several_images_of_other_shapes_in_one_batch(server: RunningServer, model: str) -> None:
    frames = [
        _solid(300, 300, (0, 0, 255)),  # square: no padding
        _solid(480, 960, (0, 255, 0)),  # portrait: padding left and right
        _solid(1000, 300, (255, 0, 0)),  # wide
    ]
    batcher = server.runtime.handles[model].batcher
    assert batcher is not None
    before = (batcher.stats.batches, batcher.stats.items)
    reply = _detect(server, model=model, images=[_b64(f) for f in frames], score_threshold=0.6)
    assert (batcher.stats.batches - before[0], batcher.stats.items - before[1]) == (1, 3)
    size = (640, 640) if model == "yolo" else (320, 480)
    names = ["person", "car", "dog"] if model == "yolo" else ["a", "b", "c"]  # labels: wins
    for i, (frame, data) in enumerate(zip(frames, reply["data"], strict=True)):
        height, width = frame.shape[:2]
        assert (data["index"], data["width"], data["height"]) == (i, width, height)
        person = next(d for d in data["detections"] if d["score"] == pytest.approx(0.9))
        assert person["label"] == names[0]
        planted = _scaled(PLANTED[0][:4], *size)
        np.testing.assert_allclose(person["box"], _expected(planted, width, height, size), atol=0.01)
        assert all(d["score"] > 0.6 for d in data["detections"])
        boxes = np.array([d["box"] for d in data["detections"]])
        assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 2] <= width)
    # the probe says which channel each image lit: blue -> dog, green -> car, red -> person
    probes = [
        [d["label"] for d in data["detections"] if min(abs(d["score"] - s) for s in (0.9, 0.7)) > 1e-4]
        for data in reply["data"]
    ]
    assert probes == [[names[2]], [names[1]], [names[0]]]


def test_end_to_end_exports_skip_straight_to_the_boxes(server: RunningServer) -> None:
    image = _b64(_solid(1280, 720, (0, 0, 0)))
    data = _detect(server, model="e2e", images=[image, image])["data"]
    for one in data:  # COCO names: class 2 is a car
        assert [(d["label"], d["box"]) for d in one["detections"]] == [("car", [540.0, 310.0, 740.0, 410.0])]
    faint = _detect(server, model="e2e", image=image, score_threshold=0.1, classes=["person"])
    assert [d["box"] for d in faint["data"][0]["detections"]] == [[20.0, 20.0, 100.0, 100.0]]


def test_concurrent_requests_are_batched_and_answered_as_alone(server: RunningServer) -> None:
    bodies = [{"image": _b64(_solid(64 * (i + 1), 48 * (i + 2), (0, 0, 255)))} for i in range(4)]
    alone = [_detect(server, **body)["data"] for body in bodies]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda b: _detect(server, **b)["data"], bodies))
    assert together == alone


def test_thresholds_classes_and_cap(server: RunningServer) -> None:
    image = _b64(_solid(1280, 720, (255, 0, 0)))

    def labels(**options: Any) -> list[tuple[str, float]]:
        data = _detect(server, image=image, **options)["data"][0]["detections"]
        return [(d["label"], round(d["score"], 2)) for d in data]

    assert labels(max_detections=2) == [("person", 0.9), ("person", 0.76)]
    assert labels(score_threshold=0.35) == [("person", 0.9), ("person", 0.76), ("car", 0.7), ("car", 0.5)]
    assert labels(classes=["dog"]) == [("dog", 0.3)]
    # among the requested classes only: the probe's car score (0.20) is its best car score
    assert labels(classes=["car"], score_threshold=0.15) == [("car", 0.7), ("car", 0.5), ("car", 0.2)]
    # IoU of the two planted people is 0.86: kept apart above that, merged below
    assert labels(iou_threshold=0.9, classes=["person"]) == [("person", 0.9), ("person", 0.8), ("person", 0.76)]
    assert labels(score_threshold=1.0) == []


def test_multipart_upload(server: RunningServer) -> None:
    red, blue = _png(_solid(1280, 720, (255, 0, 0))), _png(_solid(1280, 720, (0, 0, 255)))
    reply = httpx.post(
        server.v1 + "/detect/upload",
        files=[("files", ("red.png", red, "image/png")), ("files", ("blue.png", blue, "image/png"))],
        data={"classes": ["person", "dog"], "score_threshold": "0.5"},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    labels = [[(d["label"], round(d["score"], 2)) for d in x["detections"]] for x in reply.json()["data"]]
    assert labels == [[("person", 0.9), ("person", 0.76)], [("person", 0.9), ("dog", 0.76)]]


def test_files_then_detect_by_id(server: RunningServer) -> None:
    red = _png(_solid(1280, 720, (255, 0, 0)))
    uploaded = httpx.post(server.v1 + "/files", files={"file": ("red.png", red, "image/png")})
    assert uploaded.status_code == 200, uploaded.text
    first = uploaded.json()
    assert first["bytes"] == len(red) and first["filename"] == "red.png" and first["object"] == "file"
    body = {"data": "data:image/png;base64," + base64.b64encode(red).decode(), "filename": "r2"}
    second = httpx.post(server.v1 + "/files", json=body).json()
    assert second["bytes"] == len(red) and second["id"] != first["id"]
    reply = _detect(server, file_ids=[first["id"], second["id"]], max_detections=1)
    assert [d["detections"][0]["box"] for d in reply["data"]] == [[540.0, 310.0, 740.0, 410.0]] * 2
    assert httpx.get(f"{server.v1}/files/{first['id']}").json()["bytes"] == len(red)
    assert httpx.get(server.v1 + "/files").status_code == 405  # no listing of others' ids
    assert httpx.delete(f"{server.v1}/files/{first['id']}").json()["deleted"] is True
    gone = httpx.post(server.v1 + "/detect", json={"file_ids": [second["id"], first["id"]]})
    assert gone.status_code == 404 and gone.json()["error"]["param"] == "file_ids[1]"
    assert httpx.get(f"{server.v1}/files/{first['id']}").status_code == 404


def test_a_tool_call_names_images_by_id(server: RunningServer) -> None:
    """What the coordinator does with an LLM's tool call: validate the arguments against
    the expert's input model (its tool schema), then prepare and run it."""
    from corral.errors import NotFound

    expert = server.runtime.handles["yolo"].expert
    assert expert is not None
    parameters = expert.tool_schema()["function"]["parameters"]
    assert parameters["required"] == ["file_ids"]
    assert "images" not in parameters["properties"] and "image" not in parameters["properties"]
    red = _png(_solid(1280, 720, (255, 0, 0)))
    file_id = httpx.post(server.v1 + "/files", files={"file": ("r.png", red)}).json()["id"]
    request = expert.operation.input_model.model_validate({"file_ids": [file_id], "max_detections": 1})
    (result,) = expert.forward(expert.prepare(request))  # type: ignore[attr-defined]
    assert (result.width, result.height) == (1280, 720)
    assert [(d.label, d.box) for d in result.detections] == [("person", [540.0, 310.0, 740.0, 410.0])]
    with pytest.raises(NotFound) as missing:
        expert.prepare(expert.operation.input_model.model_validate({"file_ids": [file_id, "file-gone"]}))  # type: ignore[attr-defined]
    assert missing.value.param == "file_ids[1]"


@pytest.mark.parametrize(
    ("body", "status", "param", "words"),
    [
        ({"image": "http://example.com/a.png"}, 422, "image", "does not fetch URLs"),
        ({"images": ["bm90IGFuIGltYWdl"]}, 422, "images[0]", "not an image"),
        ({"images": ["%%%"]}, 422, "images[0]", "not valid base64"),
        ({"image": "x", "file_ids": ["f"]}, 422, None, "exactly one of images, image or file_ids"),
        ({}, 422, None, "exactly one of"),
        ({"image": "x", "score_threshold": 1.5}, 422, "score_threshold", "less than or equal to 1"),
        ({"image": "x", "iou_threshold": -0.1}, 422, "iou_threshold", "greater than or equal"),
        ({"image": "x", "max_detections": 0}, 422, "max_detections", "greater than or equal"),
        ({"images": ["x"] * 7}, 413, "images", "server.limits.max_images is 6"),
        ({"file_ids": ["file-nope"]}, 404, "file_ids[0]", "no file 'file-nope'"),
        ({"model": "nope", "image": "x"}, 404, "model", "no detect expert named 'nope'"),
    ],
)
def test_bad_requests_are_4xx_naming_the_field(
    server: RunningServer, body: dict[str, Any], status: int, param: str | None, words: str
) -> None:
    reply = httpx.post(server.v1 + "/detect", json=body)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert words in error["message"], error
    if param is not None:
        assert error["param"] == param, error


def test_image_limits_over_http(server: RunningServer) -> None:
    small = _b64(_solid(64, 64, (1, 2, 3)))
    unknown = httpx.post(server.v1 + "/detect", json={"image": small, "classes": ["person", "horse"]})
    assert unknown.status_code == 422 and unknown.json()["error"]["param"] == "classes[1]"
    assert "person, car, dog" in unknown.json()["error"]["message"]
    big = _b64(np.zeros((2001, 2000, 3), dtype=np.uint8))  # 4,002,000 pixels; compresses well
    reply = httpx.post(server.v1 + "/detect", json={"images": [small, big]})
    assert reply.status_code == 413 and reply.json()["error"]["param"] == "images[1]"
    assert "server.limits.max_image_pixels is 4000000" in reply.json()["error"]["message"]
    huge = httpx.post(server.v1 + "/files", files={"file": ("x.bin", b"\0" * 300_001)})
    assert huge.status_code == 413 and "server.limits.max_file_bytes" in huge.text
    wrong = httpx.post(server.v1 + "/files", content=b"abc", headers={"content-type": "text/plain"})
    assert wrong.status_code == 415
    no_file = httpx.post(server.v1 + "/files", files={"other": ("x", b"abc")})
    assert no_file.status_code == 422 and no_file.json()["error"]["param"] == "file"
    corrupt = httpx.post(server.v1 + "/detect/upload", files={"files": ("a.png", _png(_solid(50, 50, (9, 9, 9)))[:60])})
    assert corrupt.status_code == 422 and corrupt.json()["error"]["param"] == "files[0]"
    assert httpx.get(server.url + "/healthz").status_code == 200


def _iou(a: list[float], b: list[float]) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area - inter)


def test_opencv_finds_the_astronauts_face(server: RunningServer) -> None:
    from skimage import data

    reply = _detect(server, model="faces", image=_b64(data.astronaut()))
    faces = reply["data"][0]["detections"]
    assert [d["label"] for d in faces] == ["face"], faces
    # the face in skimage's astronaut (Eileen Collins), read off the image by eye
    assert _iou(faces[0]["box"], [180, 60, 275, 165]) > 0.6
    assert 0.5 < faces[0]["score"] <= 1.0
    both = _detect(server, model="people", image=_b64(data.astronaut()), classes=["face"])
    assert [d["label"] for d in both["data"][0]["detections"]] == ["face"]


def test_opencv_finds_the_person() -> None:
    photo = _darknet_photo("person.jpg")
    if photo is None:
        pytest.skip("darknet's data/person.jpg not found (.ci/run unpacks Debian's darknet package)")
    config = "models:\n  - {name: people, model: opencv/hog-person}\n"
    with serve(parse_config(config)) as running:
        reply = httpx.post(
            running.v1 + "/detect/upload", files={"files": ("person.jpg", photo.read_bytes())}, timeout=60
        )
    assert reply.status_code == 200, reply.text
    (data,) = reply.json()["data"]
    assert (data["width"], data["height"]) == (640, 424)
    people = data["detections"]
    assert people and all(d["label"] == "person" for d in people)
    # the woman in the blue coat, read off the photo by eye; HOG's box has a margin around her
    truth = [190, 98, 275, 375]
    best = max(people, key=lambda d: _iou(d["box"], truth))
    assert _iou(best["box"], truth) > 0.3
    x1, y1, x2, y2 = best["box"]
    assert x1 <= 200 and y1 <= 110 and x2 >= 265 and y2 >= 360  # she is inside it
