"""Two tenants on one server, over real HTTP: what a key makes (uploads, detectors, graph
models) and does (traces, usage) is its own; an admin sees all; without keys, as before."""

from __future__ import annotations

import base64
import io
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from corral.config import parse_config

from ._server import RunningServer, serve

MODELS = """
models:
  - {name: anomaly, model: pyod/IForest}
  - {name: graph, model: pyg/GCN, options: {epochs: 3}}
  - {name: detector, model: opencv/haar-face}
  - {name: embedder, model: sentence-transformers/all-MiniLM-L6-v2}
"""
CONFIG = (
    MODELS
    + """
server:
  limits: {max_fit_bytes: 2000000}
  api_keys:
    - {key: alice-key, name: alice, experts: [anomaly, graph, detector]}
    - {key: bob-key, name: bob, experts: [anomaly, graph, detector]}
    - {key: carol-key, name: carol, experts: [embedder]}
    - {key: ops-key, name: ops, shared: true, experts: [anomaly]}
    - {key: root-key, name: root, role: admin}
"""
)
ALICE, BOB, CAROL, OPS, ROOT = (
    {"authorization": f"Bearer {k}-key"} for k in ("alice", "bob", "carol", "ops", "root")
)
FIT = {"model": "anomaly", "series": [float(i % 5) for i in range(40)], "window": 4}
SCORE = {"model": "anomaly", "series": [0.0, 1.0, 2.0, 3.0, 4.0, 0.0]}
GRAPH = {
    "model": "graph",
    "nodes": {"ids": ["a", "b", "c", "d"], "features": [[0.0], [1.0], [0.0], [1.0]]},
    "edges": [["a", "b"], ["b", "c"], ["c", "d"]],
    "labels": {"a": "x", "b": "y", "c": "x", "d": "y"},
    "held_out": 0.0,
}


def _png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (48, 32), "white").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with serve(parse_config(CONFIG)) as running:
        yield running


def _post(server: RunningServer, path: str, body: Any, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(server.v1 + path, json=body, headers=headers, timeout=120)


def _get(server: RunningServer, path: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.get(server.v1 + path, headers=headers, timeout=60)


def test_two_tenants_may_each_have_a_detector_of_the_same_name(server: RunningServer) -> None:
    a = _post(server, "/anomaly/sensors/fit", FIT, ALICE)
    b = _post(server, "/anomaly/sensors/fit", {**FIT, "series": FIT["series"][::-1]}, BOB)
    assert a.status_code == b.status_code == 200, (a.text, b.text)
    assert a.json()["version"] == b.json()["version"] == 1  # two detectors, not v1 and v2
    # bob refits his: alice's stays at version 1
    assert _post(server, "/anomaly/sensors/fit", FIT, BOB).json()["version"] == 2
    listed = {k: _get(server, "/anomaly", h).json()["data"] for k, h in (("a", ALICE), ("b", BOB))}
    assert [(d["name"], d["versions"]) for d in listed["a"]] == [("sensors", [1])]
    assert [(d["name"], d["versions"]) for d in listed["b"]] == [("sensors", [1, 2])]
    scored = _post(server, "/anomaly/sensors/score", SCORE, ALICE).json()
    assert scored["name"] == "sensors" and scored["version"] == 1
    # a key with no anomaly expert sees none of them, and may not score
    assert _get(server, "/anomaly", CAROL).json()["data"] == []
    refused = _post(server, "/anomaly/sensors/score", SCORE, CAROL)
    assert refused.status_code == 403 and "embedder" in refused.json()["error"]["message"]


def test_a_key_cannot_reach_another_keys_models(server: RunningServer) -> None:
    assert _post(server, "/anomaly/mine/fit", FIT, ALICE).status_code == 200
    assert _post(server, "/graph/g/fit", GRAPH, ALICE).status_code == 200
    # bob: as if they did not exist, and naming alice as owner is refused
    assert _post(server, "/anomaly/mine/score", SCORE, BOB).status_code == 404
    assert _post(server, "/anomaly/mine/score?owner=alice", SCORE, BOB).status_code == 403
    gone = httpx.delete(server.v1 + "/anomaly/mine?owner=alice", headers=BOB)
    assert gone.status_code == 403
    assert httpx.delete(server.v1 + "/anomaly/mine", headers=BOB).status_code == 404
    predict = {"model": "graph", "nodes": ["a"]}
    assert _post(server, "/graph/g/predict", predict, BOB).status_code == 404
    assert _get(server, "/graph/g", BOB).status_code == 404
    assert _get(server, "/graph/g?owner=alice", BOB).status_code == 403
    assert _get(server, "/graph", BOB).json()["data"] == []
    assert httpx.delete(server.v1 + "/graph/g", headers=BOB).status_code == 404
    # bob's fit of the same name is his own model, not a new version of alice's
    assert _post(server, "/graph/g/fit", GRAPH, BOB).json()["version"] == 1
    assert _get(server, "/graph/g", ALICE).json()["versions"] == [1]
    assert _post(server, "/graph/g/predict", predict, ALICE).status_code == 200


def test_shared_and_admin_keys_see_every_tenant(server: RunningServer) -> None:
    assert _post(server, "/anomaly/fleet/fit", FIT, ALICE).status_code == 200
    owners = {(d["owner"], d["name"]) for d in _get(server, "/anomaly", ROOT).json()["data"]}
    assert {("alice", "fleet"), ("alice", "sensors"), ("bob", "sensors")} <= owners
    # the shared key scores alice's detector by naming its owner; a bare name is its own
    shared = _post(server, "/anomaly/fleet/score?owner=alice", SCORE, OPS)
    assert shared.status_code == 200 and shared.json()["version"] == 1
    assert _post(server, "/anomaly/fleet/score", SCORE, OPS).status_code == 404
    graphs = {(d["owner"], d["name"]) for d in _get(server, "/graph", ROOT).json()["data"]}
    assert ("alice", "g") in graphs


def test_uploads_belong_to_their_key(server: RunningServer) -> None:
    upload = {"data": base64.b64encode(_png()).decode(), "content_type": "image/png"}
    file_id = _post(server, "/files", upload, ALICE).json()["id"]
    assert _get(server, f"/files/{file_id}", ALICE).status_code == 200
    assert _get(server, f"/files/{file_id}", BOB).status_code == 404  # the id is no key
    detect = {"model": "detector", "file_ids": [file_id]}
    assert _post(server, "/detect", detect, BOB).status_code == 404
    assert httpx.delete(server.v1 + f"/files/{file_id}", headers=BOB).status_code == 404
    assert _post(server, "/detect", detect, ALICE).status_code == 200
    assert _get(server, f"/files/{file_id}", ROOT).status_code == 200  # admin


def test_traces_usage_and_experts_are_per_key(server: RunningServer) -> None:
    mine = _post(server, "/anomaly/sensors/score", SCORE, ALICE)
    trace_id = mine.headers["x-corral-trace-id"]
    assert _get(server, f"/traces/{trace_id}", ALICE).json()["id"] == trace_id
    assert _get(server, f"/traces/{trace_id}", BOB).status_code == 404
    bobs = _get(server, "/traces?limit=500", BOB).json()["data"]
    assert trace_id not in {t["id"] for t in bobs}
    assert trace_id in {t["id"] for t in _get(server, "/traces?limit=500", ROOT).json()["data"]}
    usage = _get(server, "/usage?group_by=api_key", BOB).json()
    assert {row["api_key"] for row in usage["data"]} <= {"bob"}
    everyone = {
        row["api_key"] for row in _get(server, "/usage?group_by=api_key", ROOT).json()["data"]
    }
    assert {"alice", "bob"} <= everyone
    experts = [e["name"] for e in _get(server, "/experts", CAROL).json()["data"]]
    assert experts == ["embedder"]
    assert _get(server, "/models/anomaly", CAROL).status_code == 403
    assert len(_get(server, "/experts", ROOT).json()["data"]) == 4


def test_forbidden_expert_anywhere_is_403_naming_the_allowed(server: RunningServer) -> None:
    for path, body in (
        ("/embeddings", {"model": "anomaly", "input": ["x"]}),  # another task's expert
        ("/anomaly/x/fit", {**FIT, "model": "graph"}),
        ("/detect", {"model": "embedder", "image": "x"}),
    ):
        reply = _post(server, path, body, CAROL if path != "/anomaly/x/fit" else ALICE)
        assert reply.status_code in (403, 404, 422), (path, reply.text)
    refused = _post(server, "/embeddings", {"model": "anomaly", "input": ["x"]}, CAROL)
    assert refused.status_code == 403, refused.text
    assert "may use: embedder" in refused.json()["error"]["message"]
    ok = _post(server, "/embeddings", {"model": "embedder", "input": ["x"]}, CAROL)
    assert ok.status_code == 200


def _raw_status(server: RunningServer, head: bytes) -> bytes:
    """The status line the server answers a hand-written request with (httpx itself
    refuses to send some malformed headers, so the socket is written directly)."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n" + head + b"Connection: close\r\n\r\n"
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer.split(b"\r\n", 1)[0]


def test_malformed_authorization_is_401_never_a_dropped_connection(server: RunningServer) -> None:
    for value in (
        b"Bearer ",
        b"Bearer",
        b"bearer  alice-key",
        b"Bearer \xff\xfe",
        b"Basic YQ==",
        b"x" * 8000,
    ):
        assert (
            _raw_status(server, b"Authorization: " + value + b"\r\n")
            == b"HTTP/1.1 401 Unauthorized"
        )
    assert _raw_status(server, b"X-Api-Key: \r\n") == b"HTTP/1.1 401 Unauthorized"
    # whitespace around a field value is not part of it (RFC 9110 5.5): the key itself
    assert _raw_status(server, b"Authorization: Bearer alice-key \r\n") == b"HTTP/1.1 200 OK"


def test_query_parameters_are_bounded(server: RunningServer) -> None:
    huge = "9" * 400
    assert _get(server, f"/usage?since={huge}d", ROOT).status_code == 422
    assert _get(server, f"/traces?limit={huge}", ROOT).status_code == 422
    assert httpx.delete(server.v1 + f"/anomaly/x?version={huge}", headers=ALICE).status_code in (
        404,
        422,
    )
    graph = {**GRAPH, "nodes": {"ids": [int(huge), 1], "features": [[0.0], [1.0]]}}
    graph["edges"], graph["labels"] = [[int(huge), 1]], None
    reply = _post(server, "/graph/big/fit", graph, ALICE)
    assert reply.status_code == 422, reply.text


def test_fits_that_would_not_fit_in_memory_are_413_before_running(server: RunningServer) -> None:
    series = {**FIT, "series": [float(i % 7) for i in range(5000)], "window": 100}
    refused = _post(server, "/anomaly/long/fit", series, ALICE)
    assert refused.status_code == 413, refused.text
    error = refused.json()["error"]
    assert "server.limits.max_fit_bytes" in error["message"] and error["param"] == "series"
    rows = {"model": "anomaly", "data": [[0.0] * 50] * 1500}
    assert _post(server, "/anomaly/wide/fit", rows, ALICE).status_code == 413
    graph = {
        "model": "graph",
        "nodes": {"features": [[float(i % 3)] * 8 for i in range(3000)]},
        "edges": [[i, i + 1] for i in range(2999)],
        "labels": {str(i): "x" if i % 2 else "y" for i in range(10)},
    }
    refused = _post(server, "/graph/big/fit", graph, ALICE)
    assert refused.status_code == 413 and "max_fit_bytes" in refused.text, refused.text
    assert _post(server, "/anomaly/small/fit", FIT, ALICE).status_code == 200  # still serving


def test_without_keys_nothing_is_owned(tmp_path: Any) -> None:
    config = parse_config(
        MODELS.split("  - {name: graph")[0] + f"runtime: {{state_dir: {tmp_path}}}\n"
    )
    with serve(config) as running:
        fitted = httpx.post(running.v1 + "/anomaly/sensors/fit", json=FIT, timeout=60)
        assert fitted.status_code == 200 and fitted.json()["name"] == "sensors"
        listed = httpx.get(running.v1 + "/anomaly").json()["data"]
        assert [(d["name"], d["owner"]) for d in listed] == [("sensors", None)]
        assert (
            tmp_path / "artifacts" / "anomaly" / "sensors" / "v1.json"
        ).exists()  # the layout of before
        scored = httpx.post(running.v1 + "/anomaly/sensors/score", json=SCORE, timeout=60)
        assert scored.status_code == 200
