"""Every error a client can cause gets a clear 4xx/5xx in OpenAI's error shape, no traceback,
and the server keeps serving."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import openai
import pytest

from corral.config import parse_config

from ._server import RunningServer, serve


@pytest.fixture(scope="module")
def server(minilm_path) -> Iterator[RunningServer]:
    config = parse_config("""
models:
  - name: embedder
    model: sentence-transformers/all-MiniLM-L6-v2
    aliases: [minilm]
  - name: classifier
    model: sentence-transformers/all-MiniLM-L6-v2
    task: classify
  - name: reranker
    model: cross-encoder/ms-marco-MiniLM-L-6-v2
  - name: ghost
    model: acme/never-downloaded
    task: embed
server:
  limits: {max_body_bytes: 20000, max_batch_items: 8, max_embedding_inputs: 8, max_text_chars: 500,
           max_labels: 4}
""")
    with serve(config, environ={"HF_HUB_CACHE": "/nonexistent"}) as running:
        yield running


def _error(reply: httpx.Response, status: int) -> dict:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert set(body) == {"error"}
    assert "Traceback" not in reply.text
    return body["error"]


def test_malformed_body_is_422_naming_the_field(server: RunningServer) -> None:
    error = _error(httpx.post(server.v1 + "/rerank", json={"documents": ["a"]}), 422)
    assert "query" in error["message"] and "required" in error["message"].lower()
    error = _error(httpx.post(server.v1 + "/rerank", json={"query": "q"}), 422)
    assert "documents" in error["message"]
    error = _error(
        httpx.post(server.v1 + "/embeddings", json={"input": "x", "encodng_format": "x"}), 422
    )
    assert "encodng_format" in error["message"]
    error = _error(
        httpx.post(
            server.v1 + "/embeddings",
            content=b"{not json",
            headers={"content-type": "application/json"},
        ),
        400,
    )
    assert error["code"] == "invalid_json" and "not valid JSON" in error["message"]
    error = _error(httpx.post(server.v1 + "/embeddings", json={"input": [[10**9]]}), 422)
    assert "not in tiktoken's cl100k_base" in error["message"]
    error = _error(httpx.post(server.v1 + "/classify", json={"input": "x"}), 422)
    assert "labels" in error["message"]
    error = _error(
        httpx.post(server.v1 + "/embeddings", json={"input": "x", "dimensions": 10_000}), 422
    )
    assert "dimensions" in error["message"]


def test_unknown_model_is_404_listing_available(server: RunningServer) -> None:
    error = _error(
        httpx.post(server.v1 + "/embeddings", json={"input": "x", "model": "gpt-5"}), 404
    )
    assert error["code"] == "model_not_found"
    assert "embedder" in error["message"] and "ghost" in error["message"]
    # a name that exists but does another task is also a 404 for this task
    error = _error(
        httpx.post(server.v1 + "/embeddings", json={"input": "x", "model": "classifier"}), 404
    )
    assert "embedder" in error["message"]
    _error(httpx.get(server.v1 + "/models/nope"), 404)
    assert (
        httpx.post(server.v1 + "/embeddings", json={"input": "x", "model": "minilm"}).status_code
        == 200
    )


def test_openai_client_raises_typed_errors(server: RunningServer) -> None:
    with (
        openai.OpenAI(base_url=server.v1, api_key="unused", max_retries=0) as client,
        pytest.raises(openai.NotFoundError, match="available"),
    ):
        client.embeddings.create(model="nope", input="x")


@pytest.mark.parametrize("model", ["ghost", "reranker"])
def test_missing_weights_is_503_naming_expert_and_fix(server: RunningServer, model: str) -> None:
    path = "/embeddings" if model == "ghost" else "/rerank"
    body = (
        {"input": "x", "model": model} if model == "ghost" else {"query": "q", "documents": ["d"]}
    )
    reply = httpx.post(server.v1 + path, json=body)
    error = _error(reply, 503)
    assert model in error["message"] and "path:" in error["message"]
    assert reply.headers["retry-after"]


def test_oversized_inputs_are_413_naming_the_limit(server: RunningServer) -> None:
    error = _error(httpx.post(server.v1 + "/embeddings", json={"input": ["x"] * 9}), 413)
    assert "max_embedding_inputs" in error["message"]
    error = _error(httpx.post(server.v1 + "/classify", json={"input": ["x"] * 9}), 413)
    assert "max_batch_items" in error["message"]
    error = _error(httpx.post(server.v1 + "/embeddings", json={"input": "y" * 501}), 413)
    assert "max_text_chars" in error["message"]
    error = _error(httpx.post(server.v1 + "/embeddings", json={"input": "z" * 30_000}), 413)
    assert "max_body_bytes" in error["message"]
    error = _error(
        httpx.post(server.v1 + "/classify", json={"input": "a", "labels": list("abcde")}), 413
    )
    assert "max_labels" in error["message"]
    error = _error(
        httpx.post(server.v1 + "/rerank", json={"query": "q", "documents": ["d"] * 9}), 413
    )
    assert "documents" in error["message"]


def test_chunked_body_over_limit_is_413(server: RunningServer) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"input": "'
        for _ in range(30):
            yield b"w" * 1000
        yield b'"}'

    reply = httpx.post(
        server.v1 + "/embeddings", content=chunks(), headers={"content-type": "application/json"}
    )
    assert _error(reply, 413)["code"] == "payload_too_large"


def test_unknown_route_and_method(server: RunningServer) -> None:
    assert _error(httpx.get(server.v1 + "/nothing-here"), 404)["code"] == "not_found"
    assert _error(httpx.get(server.v1 + "/embeddings"), 405)["code"] == "method_not_allowed"


def test_server_keeps_serving_after_bad_requests(server: RunningServer) -> None:
    async def storm() -> list[int]:
        async with httpx.AsyncClient(base_url=server.v1, timeout=60) as http:
            bad = [
                http.post(
                    "/embeddings",
                    content=b"\xff\xfe garbage",
                    headers={"content-type": "application/json"},
                )
                for _ in range(10)
            ]
            good = [http.post("/embeddings", json={"input": f"text {i}"}) for i in range(10)]
            replies = await asyncio.gather(*bad, *good)
        return [r.status_code for r in replies]

    codes = asyncio.run(storm())
    assert codes[:10] == [400] * 10 and codes[10:] == [200] * 10  # not JSON: 400
    assert httpx.get(server.url + "/healthz").status_code == 200


def test_api_keys_when_configured(minilm_path) -> None:
    config = parse_config(
        """
models:
  - name: embedder
    model: sentence-transformers/all-MiniLM-L6-v2
server:
  api_keys: ["${TEST_CORRAL_KEY}"]
""",
        environ={"TEST_CORRAL_KEY": "s3cret"},
    )
    with serve(config) as running:
        assert _error(httpx.get(running.v1 + "/models"), 401)["code"] == "invalid_api_key"
        wrong = httpx.post(
            running.v1 + "/embeddings",
            json={"input": "x"},
            headers={"Authorization": "Bearer nope"},
        )
        assert _error(wrong, 401)
        with openai.OpenAI(base_url=running.v1, api_key="s3cret", max_retries=0) as client:
            assert len(client.embeddings.create(model="embedder", input="x").data) == 1
        assert httpx.get(running.url + "/healthz").status_code == 200  # probes need no key
