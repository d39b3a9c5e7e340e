"""Detection throughput: corral's ``/v1/detect`` over HTTP vs the bare ONNX session.

No package ships YOLO weights, so the model is a random-init network with YOLOv8n's
shape (strided conv backbone, three heads at strides 8/16/32, output ``[batch, 84,
8400]``, class biases at YOLO's prior so few boxes pass the threshold), exported to
ONNX with a dynamic batch. Side by side in one run, one system at a time on the same
cores:

* **bare session**: ``session.run`` on already letterboxed 640 x 640 float batches: the
  ceiling, with no decoding, letterboxing, NMS, JSON or HTTP.
* **corral, 16 frames a request**: JPEG frames as base64 in ``/v1/detect``: decode,
  letterbox, one batched run, NMS, JSON, HTTP; the overhead ratio is against the ceiling.
* **corral, 1 frame a request, 4 clients**: the micro-batcher gathers concurrent frames.
* **OpenCV** (HOG people + Haar faces): the offline default, frames/s on the same frames.

    python bench/detect_throughput.py [--frames 64]
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from _harness import corral_command, free_port, machine, start, stop, write_section
from PIL import Image

SIZE = 640
BATCH = 16


def build_model(folder: Path) -> Path:
    """A YOLOv8n-sized random network in the YOLO output layout, exported to ONNX."""
    import torch
    from torch import nn

    def block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1),
            nn.SiLU(),
            nn.Conv2d(c_out, c_out, 3, 1, 1),
            nn.SiLU(),
        )

    class Yoloish(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(block(3, 16, 2), block(16, 32, 2))
            self.p3, self.p4, self.p5 = block(32, 64, 2), block(64, 128, 2), block(128, 256, 2)
            self.heads = nn.ModuleList(nn.Conv2d(c, 84, 1) for c in (64, 128, 256))
            for head, stride in zip(self.heads, (8, 16, 32), strict=True):
                nn.init.constant_(head.bias[4:], float(np.log(5 / 80 / (640 / stride) ** 2)))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            p3 = self.p3(self.stem(x))
            p4 = self.p4(p3)
            p5 = self.p5(p4)
            outs = []
            for head, feature, stride in zip(self.heads, (p3, p4, p5), (8, 16, 32), strict=True):
                raw = head(feature)
                b, _, h, w = raw.shape
                ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
                grid = torch.stack([xs, ys]).float().reshape(1, 2, h * w)
                raw = raw.reshape(b, 84, h * w)
                centre = (grid + 0.5 + torch.tanh(raw[:, :2])) * stride
                size = torch.sigmoid(raw[:, 2:4]) * stride * 8
                outs.append(torch.cat([centre, size, torch.sigmoid(raw[:, 4:])], 1))
            return torch.cat(outs, 2)  # [batch, 84, 8400]

    path = folder / "yoloish.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Yoloish().eval(),
            (torch.zeros(1, 3, SIZE, SIZE),),
            str(path),
            input_names=["images"],
            output_names=["output0"],
            dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}},
            dynamo=False,
        )
    return path


def frames(n: int) -> list[np.ndarray]:
    from skimage import data

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    resized = [np.asarray(Image.fromarray(p).resize((SIZE, SIZE))) for p in photos]
    return [resized[i % len(resized)] for i in range(n)]


def jpeg_b64(frame: np.ndarray) -> str:
    out = io.BytesIO()
    Image.fromarray(frame).save(out, format="JPEG", quality=90)
    return base64.b64encode(out.getvalue()).decode()


def bare_session(model: Path, batch: np.ndarray, rounds: int) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    session.run(None, {"images": batch[:BATCH]})  # warm-up
    started = time.perf_counter()
    for _ in range(rounds):
        for start_at in range(0, len(batch), BATCH):
            session.run(None, {"images": batch[start_at : start_at + BATCH]})
    return rounds * len(batch) / (time.perf_counter() - started)


def corral_batches(url: str, model: str, images: list[str], rounds: int) -> float:
    with httpx.Client(timeout=600) as client:
        body = {"model": model, "images": images[:2]}
        client.post(url, json=body).raise_for_status()  # warm-up
        started = time.perf_counter()
        for _ in range(rounds):
            for start_at in range(0, len(images), BATCH):
                body = {"model": model, "images": images[start_at : start_at + BATCH]}
                client.post(url, json=body).raise_for_status()
        return rounds * len(images) / (time.perf_counter() - started)


def corral_single(url: str, model: str, images: list[str], clients: int) -> float:
    def one(image: str) -> None:
        httpx.post(url, json={"model": model, "image": image}, timeout=600).raise_for_status()

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, images[:clients]))  # warm-up
        started = time.perf_counter()
        list(pool.map(one, images))
        return len(images) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=64, help="frames per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="passes over the frames")
    parser.add_argument("--opencv-frames", type=int, default=8)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = build_model(folder)
        pictures = frames(args.frames)
        images = [jpeg_b64(f) for f in pictures]
        tensor = np.stack(pictures).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        load = os.getloadavg()[0]
        bare_before = bare_session(model, tensor, args.rounds)
        print(f"bare session: {bare_before:.1f} frames/s")

        config = folder / "corral.yaml"
        config.write_text(
            f"""
models:
  - {{name: yolo, model: ultralytics/yolov12n, path: {model}, batch: {{max_size: {BATCH}, max_wait_ms: 5}}}}
  - {{name: opencv, model: opencv/people}}
observe: {{usage: false}}
server:
  limits: {{max_body_bytes: 16000000}}
"""
        )
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start(corral_command(config, port), url + "/readyz")
        try:
            batched = corral_batches(url + "/v1/detect", "yolo", images, args.rounds)
            print(f"corral, {BATCH} a request: {batched:.1f} frames/s")
            single = corral_single(url + "/v1/detect", "yolo", images, clients=4)
            print(f"corral, 1 a request x 4 clients: {single:.1f} frames/s")
            opencv = corral_batches(url + "/v1/detect", "opencv", images[: args.opencv_frames], 1)
            print(f"opencv: {opencv:.2f} frames/s")
        finally:
            stop(proc)
        # again after, and the faster of the two: the ceiling is never understated
        bare = max(bare_before, bare_session(model, tensor, args.rounds))
        print(f"bare session (best of two): {bare:.1f} frames/s")

    write_section(
        "detect_throughput",
        f"""
## Detection throughput (`bench/detect_throughput.py`)

{args.frames} JPEG frames of {SIZE} x {SIZE} (scikit-image photos), a random-init network
of YOLOv8n's shape (output `[batch, 84, 8400]`) on ONNX Runtime, CPU; {machine()}
(1-minute load average {load:.1f} at the start: other work on the cores skews these).

| system | frames/s | vs bare session |
|---|---:|---:|
| bare `session.run` on letterboxed float batches of {BATCH} (best of before/after) | {bare:.1f} | 1.00 |
| corral `/v1/detect`, {BATCH} frames a request (decode, letterbox, NMS, HTTP) | {batched:.1f} | {batched / bare:.2f} |
| corral `/v1/detect`, 1 frame a request, 4 concurrent clients | {single:.1f} | {single / bare:.2f} |
| corral `/v1/detect`, OpenCV HOG people + Haar faces ({args.opencv_frames} frames) | {opencv:.2f} | — |

The bare session gets tensors ready-made; corral's frames arrive as base64 JPEG, so its
ratio includes JPEG decoding, letterboxing and JSON, not only HTTP. OpenCV's HOG scans
every scale of the image on the CPU: it is the offline fallback, not a real-time detector.
""",
    )


if __name__ == "__main__":
    main()
