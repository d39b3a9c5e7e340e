"""``corral serve`` at the socket, as a real process: idle and slow clients are closed
after their timeouts while a good client is served as usual, and SIGTERM drains the
requests in flight (streams too), writes their usage and exits 0."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ._server import _free_port, _wait_ready

HEADER_TIMEOUT_S, BODY_TIMEOUT_S, MAX_PER_CLIENT = 1.0, 2.0, 100
CONFIG = f"""
models:
  - {{name: fast, model: HuggingFaceTB/SmolLM2-135M-Instruct, default: true}}
server:
  connections:
    header_timeout_s: {HEADER_TIMEOUT_S}
    body_timeout_s: {BODY_TIMEOUT_S}
    max_per_client: {MAX_PER_CLIENT}
  drain_s: 300
"""
CHAT = {"model": "fast", "messages": [{"role": "user", "content": "Count to twenty."}]}


@dataclass
class Served:
    url: str
    port: int
    proc: subprocess.Popen[bytes]
    usage_db: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One ``corral serve`` process; the SIGTERM test, last in the module, ends it."""
    folder = tmp_path_factory.mktemp("serving")
    usage_db = folder / "usage.db"
    config = folder / "corral.yaml"
    config.write_text(CONFIG + f"observe: {{usage_db: {usage_db}}}\n")
    port = _free_port()
    command = [sys.executable, "-m", "corral.cli", "serve", str(config), "--port", str(port)]
    env = {**os.environ, "CORRAL_LOG_LEVEL": "warning"}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, 180, alive=lambda: proc.poll() is None)
        yield Served(url, port, proc, usage_db)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _connect(port: int, source: str) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))  # another loopback address: another client, as far as caps go
    sock.connect(("127.0.0.1", port))
    return sock


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        while sock.recv(4096):
            pass  # a 503 or nothing: then the close
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def _latency(url: str) -> float:
    started = time.perf_counter()
    assert httpx.get(url + "/v1/models", timeout=10).status_code == 200
    return time.perf_counter() - started


def test_idle_and_slow_clients_cannot_hold_the_server(served: Served) -> None:
    usual = max(_latency(served.url) for _ in range(5))
    silent = [_connect(served.port, "127.0.0.2") for _ in range(MAX_PER_CLIENT // 2)]
    trickling = [_connect(served.port, "127.0.0.2") for _ in range(MAX_PER_CLIENT // 2 - 2)]
    slow_bodies = [_connect(served.port, "127.0.0.2") for _ in range(2)]
    for sock in trickling:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and the rest never comes
    for sock in slow_bodies:
        sock.sendall(
            b"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"content-length: 1000\r\n\r\n{"
        )
    try:
        _check_held(served, usual, silent, trickling, slow_bodies)
    finally:  # a failure must not leave 100 sockets to be collected in a later test
        for sock in silent + trickling + slow_bodies:
            sock.close()


def _check_held(
    served: Served,
    usual: float,
    silent: list[socket.socket],
    trickling: list[socket.socket],
    slow_bodies: list[socket.socket],
) -> None:
    opened = time.monotonic()
    # one more from the same address is over its cap: answered 503 and closed at once
    extra = _connect(served.port, "127.0.0.2")
    extra.settimeout(5)
    assert extra.recv(4096).startswith(b"HTTP/1.1 503")
    extra.close()
    # a good client (another address) is served as usual meanwhile
    busy = max(_latency(served.url) for _ in range(5))
    assert busy <= max(3 * usual, usual + 0.5), (usual, busy)
    print(f"good client: {usual * 1000:.0f} ms alone, {busy * 1000:.0f} ms beside 100 held")
    # the idle and trickling ones are closed after the header timeout, slow bodies after theirs
    for sock in silent + trickling:
        assert _closed_by_server(sock, HEADER_TIMEOUT_S + 3)
    assert time.monotonic() - opened >= HEADER_TIMEOUT_S * 0.9
    for sock in slow_bodies:
        sock.sendall(b" ")
        assert _closed_by_server(sock, BODY_TIMEOUT_S + 3)
    # and the address may connect again
    again = _connect(served.port, "127.0.0.2")
    again.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    again.settimeout(5)
    assert again.recv(4096).startswith(b"HTTP/1.1 200")
    again.close()


def test_a_head_over_max_header_bytes_is_431_and_the_next_request_is_served(
    served: Served,
) -> None:
    sock = _connect(served.port, "127.0.0.3")
    # 65 KiB of a head, over the default 64 KiB and never ended, sent at once: the server
    # reads all of it before it answers, so its close is a clean one (no reset)
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"x-filler: " + b"a" * 65 * 1024
    try:
        sock.sendall(head)
        sock.settimeout(5)
        reply = sock.recv(4096)
    finally:
        sock.close()
    assert reply.startswith(b"HTTP/1.1 431"), reply[:200]
    ok = httpx.get(served.url + "/healthz", headers={"x-filler": "a" * 8000}, timeout=10)
    assert ok.status_code == 200


def _chat(
    url: str, stream: bool, answers: list[tuple[int, str]], sent: threading.Semaphore
) -> None:
    body = {**CHAT, "max_tokens": 4, "temperature": 0.0, "stream": stream}

    def trace(event: str, info: object) -> None:  # httpcore's: the request is on the wire
        if event == "http11.send_request_body.complete":
            sent.release()

    try:
        with httpx.Client(timeout=300) as client:
            request = client.build_request(
                "POST", url + "/v1/chat/completions", json=body, extensions={"trace": trace}
            )
            reply = client.send(request, stream=True)
            text = reply.read().decode()
            reply.close()
    except httpx.HTTPError as exc:
        answers.append((0, repr(exc)))
        return
    if stream:
        chunks = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
        assert chunks[-1] == "[DONE]", text[-200:]
        text = "".join(
            (json.loads(c)["choices"] or [{}])[0].get("delta", {}).get("content") or ""
            for c in chunks[:-1]
        )
    else:
        text = (
            reply.json()["choices"][0]["message"]["content"] if reply.status_code == 200 else text
        )
    answers.append((reply.status_code, text))


def test_sigterm_drains_requests_in_flight_and_exits_0(served: Served) -> None:
    answers: list[tuple[int, str]] = []
    sent = threading.Semaphore(0)
    threads = [
        threading.Thread(target=_chat, args=(served.url, i < 2, answers, sent)) for i in range(8)
    ]
    for thread in threads:
        thread.start()
    for _ in threads:  # all eight on the wire (then read by the server)
        assert sent.acquire(timeout=120)
    time.sleep(0.5)
    started = time.monotonic()
    served.proc.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=300)
    assert served.proc.wait(timeout=300) == 0
    drained = time.monotonic() - started
    codes = [(code, text[:80]) for code, text in answers]
    assert len(answers) == 8 and all(code == 200 and text for code, text in answers), codes
    with pytest.raises(httpx.ConnectError):  # no longer accepting
        httpx.get(served.url + "/healthz", timeout=2)
    with sqlite3.connect(served.usage_db) as db:
        (requests,) = db.execute("SELECT SUM(requests) FROM usage WHERE expert = 'fast'").fetchone()
    assert requests == 8
    print(f"drained 8 requests (2 streaming) in {drained:.1f}s after SIGTERM")
