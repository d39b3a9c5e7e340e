"""A crash in native code fails only that expert's requests: the llama.cpp expert runs in a
worker process (``isolate``, on by default for llama.cpp), and here that process really
dies of SIGSEGV mid-request, against `corral serve` in a process of its own, over HTTP.

Its callers get a 503 with Retry-After (code ``worker_crashed``, in-band for a stream
already under way); the embedder beside it answers throughout; the crash is logged with
the trace id it was running and counted; a new worker serves the next request; and an
isolated expert answers exactly what the same model answers in-process.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from corral.config import parse_config

from ._server import ProcessUrl, serve, serve_process

pytest.importorskip("llama_cpp")

CONFIG = """
models:
  - name: fast
    model: HuggingFaceTB/SmolLM2-135M-Instruct
    options: {n_ctx: 1024, n_threads: 1}
  - name: embedder
    model: sentence-transformers/all-MiniLM-L6-v2
"""
LONG = {
    "model": "fast",
    "messages": [{"role": "user", "content": "Tell a long story about a lighthouse keeper."}],
    "max_tokens": 400,
    "temperature": 0.0,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ProcessUrl, Path]]:
    folder = tmp_path_factory.mktemp("crash")
    with serve_process(CONFIG, folder) as url:
        yield url, folder / "server.log"


def _worker_pid(url: ProcessUrl, timeout: float = 60.0) -> int:
    """The pid of the server's llama.cpp worker process, once there is one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in psutil.Process(url.pid).children():
            if "corral.runtime.worker_process" in " ".join(child.cmdline()):
                return child.pid
        time.sleep(0.2)
    raise AssertionError("no worker process appeared")


def _embed_while(url: str, stop: threading.Event, statuses: list[int]) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set():
            reply = client.post("/v1/embeddings", json={"input": ["still here"]})
            statuses.append(reply.status_code)


def _crash_count(url: str) -> float:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith('corral_worker_crashes_total{expert="fast"}'):
            return float(line.split()[-1])
    return 0.0


def _wait_answering(url: str, timeout: float = 60.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        reply = httpx.post(url + "/v1/chat/completions", json={**LONG, "max_tokens": 4}, timeout=60)
        if reply.status_code == 200 or time.monotonic() > deadline:
            return reply
        assert reply.status_code == 503, reply.text
        time.sleep(0.3)


def test_a_crash_mid_request_fails_only_that_experts_callers(
    server: tuple[ProcessUrl, Path],
) -> None:
    url, log = server
    pid = _worker_pid(url)
    before = _crash_count(url)
    stop, statuses = threading.Event(), []  # type: ignore[var-annotated]
    embedding = threading.Thread(target=_embed_while, args=(url, stop, statuses))
    embedding.start()
    replies: list[httpx.Response] = []
    chat = threading.Thread(
        target=lambda: replies.append(
            httpx.post(url + "/v1/chat/completions", json=LONG, timeout=120)
        )
    )
    chat.start()
    time.sleep(1.5)  # generating by now: 400 tokens take several seconds on one thread
    os.kill(pid, signal.SIGSEGV)
    chat.join(timeout=60)
    reply = replies[0]
    assert reply.status_code == 503, reply.text
    assert reply.json()["error"]["code"] == "worker_crashed"
    assert "SIGSEGV" in reply.json()["error"]["message"]
    assert float(reply.headers["retry-after"]) >= 1
    trace_id = reply.headers["x-corral-trace-id"]

    assert httpx.get(url + "/healthz").status_code == 200
    again = _wait_answering(url)
    assert again.status_code == 200, again.text
    assert again.json()["choices"][0]["message"]["content"]
    assert _worker_pid(url) != pid  # a new worker serves
    stop.set()
    embedding.join(timeout=60)
    assert statuses and set(statuses) == {200}, statuses  # the embedder never noticed
    assert _crash_count(url) == before + 1
    logged = log.read_text(errors="replace")
    assert "SIGSEGV" in logged and trace_id in logged, logged[-2000:]


def test_a_stream_under_way_gets_the_crash_in_band(server: tuple[ProcessUrl, Path]) -> None:
    url, _ = server
    _wait_answering(url)
    pid = _worker_pid(url)
    events: list[str] = []
    with httpx.stream(
        "POST", url + "/v1/chat/completions", json={**LONG, "stream": True}, timeout=120
    ) as reply:
        assert reply.status_code == 200
        for line in reply.iter_lines():
            if line.startswith("data: "):
                events.append(line[6:])
                if len(events) == 3:
                    os.kill(pid, signal.SIGSEGV)
    assert any('"worker_crashed"' in e for e in events[3:]), events[-3:]
    assert _wait_answering(url).status_code == 200


def test_requests_while_it_restarts_are_told_when_to_retry(
    server: tuple[ProcessUrl, Path],
) -> None:
    url, _ = server
    _wait_answering(url)
    os.kill(_worker_pid(url), signal.SIGKILL)
    time.sleep(0.2)  # the reader has seen the pipe end; the restart waits out its backoff
    reply = httpx.post(url + "/v1/chat/completions", json={**LONG, "max_tokens": 4}, timeout=60)
    if reply.status_code == 503:  # else the new worker was up already
        assert reply.json()["error"]["code"] == "worker_crashed"
        assert "restarting" in reply.json()["error"]["message"]
        assert float(reply.headers["retry-after"]) >= 1
    assert _wait_answering(url).status_code == 200


def test_an_isolated_expert_answers_as_the_same_model_in_process() -> None:
    config = parse_config(
        """
models:
  - name: apart
    model: HuggingFaceTB/SmolLM2-135M-Instruct
    options: {n_ctx: 512, n_threads: 1}
  - name: inside
    model: HuggingFaceTB/SmolLM2-135M-Instruct
    isolate: false
    options: {n_ctx: 512, n_threads: 1}
"""
    )
    with serve(config) as running:
        ask = {"messages": LONG["messages"], "max_tokens": 24, "temperature": 0.0}
        answers = [
            httpx.post(running.v1 + "/chat/completions", json={**ask, "model": name}, timeout=60)
            for name in ("apart", "inside")
        ]
        assert [a.status_code for a in answers] == [200, 200]
        texts = [a.json()["choices"][0]["message"]["content"] for a in answers]
        assert texts[0] == texts[1] and texts[0]
        models = httpx.get(running.v1 + "/models").json()["data"]
        runtimes = {m["id"]: m.get("runtime") for m in models}
        assert "worker process" in str(runtimes.get("apart")), runtimes
        assert "worker process" not in str(runtimes.get("inside")), runtimes
        # the stream crosses the pipes chunk by chunk, usage last
        with httpx.stream(
            "POST",
            running.v1 + "/chat/completions",
            json={
                **ask,
                "model": "apart",
                "stream": True,
                "stream_options": {"include_usage": True},
            },
            timeout=60,
        ) as reply:
            lines = [line for line in reply.iter_lines() if line.startswith("data: ")]
        assert lines[-1] == "data: [DONE]" and '"usage"' in lines[-2]
