"""Fault injection: an expert that raises, one that hangs past its timeout, an unreachable
upstream LLM, weights that fail to load, no memory left to load. Each request gets its
clear JSON error (with the trace id), and the server goes on answering everything else."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral.config import parse_config

from ._server import RunningServer, _free_port, serve, serve_process


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    broken = tmp_path_factory.mktemp("broken-model")
    (broken / "config.json").write_text("{ this is not json")
    (broken / "modules.json").write_text("[]")
    config = parse_config(f"""
models:
  - {{name: embedder, model: sentence-transformers/all-MiniLM-L6-v2, timeout_s: 1}}
  - {{name: ner, model: spacy/en_core_web_sm}}
  - name: remote
    model: some-org/remote-llm
    task: chat
    backend: openai
    base_url: http://127.0.0.1:{_free_port()}/v1  # nothing listens there
  - {{name: broken, model: local/broken, path: {broken}, task: embed, backend: sentence-transformers}}
observe: {{usage: false}}
""")
    with serve(config) as running:
        yield running


def _healthy(server: RunningServer) -> None:
    """The fault stayed with its request: health is fine and other experts answer."""
    assert httpx.get(server.url + "/healthz").status_code == 200
    ner = httpx.post(server.v1 + "/ner", json={"input": ["Ada Lovelace lived in London."]})
    assert ner.status_code == 200 and ner.json()["data"][0]["entities"]


def _error(reply: httpx.Response, status: int) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    error: dict[str, Any] = reply.json()["error"]
    assert error["trace_id"] == reply.headers["x-corral-trace-id"]
    return error


@pytest.fixture
def faulty_encode(server: RunningServer) -> Iterator[dict[str, Any]]:
    """Wraps the embedder's real model: texts with POISON raise, texts with SLOW hang."""
    expert = server.runtime.handles["embedder"].expert
    assert expert is not None
    model = expert.model  # type: ignore[attr-defined]
    real = model.encode
    released = threading.Event()

    def encode(texts: list[str], *args: Any, **kwargs: Any) -> Any:
        if any("POISON" in t for t in texts):
            raise RuntimeError("CUDA error: device-side assert triggered (injected)")
        if any("SLOW" in t for t in texts):
            released.wait(5.0)
        return real(texts, *args, **kwargs)

    model.encode = encode
    yield {"release": released}
    released.set()
    model.encode = real


def test_an_expert_that_raises_fails_that_request_alone(
    server: RunningServer, faulty_encode: dict[str, Any]
) -> None:
    reply = httpx.post(server.v1 + "/embeddings", json={"input": ["POISON"]})
    error = _error(reply, 500)
    assert "device-side" not in error["message"]  # internals stay in the server log
    assert "embedder" in error["message"]
    assert httpx.post(server.v1 + "/embeddings", json={"input": ["fine"]}).status_code == 200
    _healthy(server)


def test_an_expert_that_hangs_times_out(
    server: RunningServer, faulty_encode: dict[str, Any]
) -> None:
    started = time.perf_counter()
    reply = httpx.post(server.v1 + "/embeddings", json={"input": ["SLOW"]}, timeout=30)
    error = _error(reply, 504)
    assert time.perf_counter() - started < 4.0 and "longer than 1s" in error["message"]
    _healthy(server)  # another expert answers while the hung call still holds its thread
    faulty_encode["release"].set()


def test_an_unreachable_upstream_is_503_naming_it(server: RunningServer) -> None:
    reply = httpx.post(
        server.v1 + "/chat/completions",
        json={"model": "remote", "messages": [{"role": "user", "content": "hi"}]},
    )
    error = _error(reply, 503)
    assert "unreachable" in error["message"] and "remote" in error["message"]
    _healthy(server)


def test_weights_that_fail_to_load_are_503(server: RunningServer) -> None:
    reply = httpx.post(server.v1 + "/embeddings", json={"model": "broken", "input": ["x"]})
    error = _error(reply, 503)
    assert "broken" in error["message"]
    _healthy(server)


def test_no_memory_to_load_is_503_not_a_crash(tmp_path: Path) -> None:
    config = """
models:
  - {name: embedder, model: sentence-transformers/all-MiniLM-L6-v2}
runtime: {memory_budget: 16MiB}
observe: {usage: false}
"""
    with serve_process(config, tmp_path) as url:
        reply = httpx.post(url + "/v1/embeddings", json={"input": ["x"]})
        error = reply.json()["error"]
        assert reply.status_code == 503 and "raise runtime.memory_budget" in error["message"]
        assert httpx.get(url + "/healthz").status_code == 200


def test_sigterm_drains_requests_in_flight(tmp_path: Path) -> None:
    """A graceful stop lets the answer being written finish, then exits cleanly."""
    import os
    import signal

    config = """
models:
  - {name: fast, model: HuggingFaceTB/SmolLM2-135M-Instruct, default: true}
observe: {usage: false}
"""
    replies: list[httpx.Response] = []
    with serve_process(config, tmp_path) as url:
        body = {
            "messages": [{"role": "user", "content": "Tell me a long story about a cat."}],
            "max_tokens": 120,
        }
        asking = threading.Thread(
            target=lambda: replies.append(
                httpx.post(url + "/v1/chat/completions", json=body, timeout=120)
            )
        )
        asking.start()
        time.sleep(0.5)  # the completion is being generated
        os.kill(url.pid, signal.SIGTERM)
        asking.join(timeout=60)
        assert replies and replies[0].status_code == 200
        assert replies[0].json()["usage"]["completion_tokens"] > 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + "/healthz")  # no longer accepting
