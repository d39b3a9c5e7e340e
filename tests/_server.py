"""Run a real corral server (uvicorn) on 127.0.0.1 in a background thread for tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from corral.config import Config
from corral.routing import FittedRouting
from corral.runtime import Runtime
from corral.server import create_app


@dataclass
class RunningServer:
    url: str
    runtime: Runtime

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    def encode(self, expert: str, texts: list[str]) -> Any:
        """A direct encode, no HTTP, with the model ``expert`` serves (torch's
        SentenceTransformer, or the ONNX/OpenVINO encoder ``runtime: auto`` chose), in
        the expert's batch size as the server runs it: what its vectors must equal (an
        int8 vector moves slightly with the batch it shares, cosine >= 0.9999)."""
        import numpy as np

        handle = self.runtime.handles[expert]
        assert handle.expert is not None, f"{expert} is not loaded"
        model = handle.expert.model  # type: ignore[attr-defined]
        size = handle.spec.batch.max_size
        parts = [texts[i : i + size] for i in range(0, len(texts), size)]
        if hasattr(model, "runner"):  # OnnxSentenceEncoder: (vectors, tokens)
            return np.concatenate([model.encode(part)[0] for part in parts])
        return np.concatenate([np.asarray(model.encode(part)) for part in parts])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, timeout: float, *, alive: Callable[[], bool]) -> None:
    """Poll /readyz until pre-warm is over: 200, or 503 naming experts that stay
    unavailable (tests serve such configs on purpose); fail once ``timeout`` passes or
    the server died."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            reply = httpx.get(url + "/readyz", timeout=2)
            if reply.status_code == 200 or (
                reply.status_code == 503 and reply.json().get("loading") is False
            ):
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or not alive():
            raise RuntimeError(f"corral server at {url} did not become ready")
        time.sleep(0.1)


@contextmanager
def serve(
    config: Config,
    *,
    environ: dict[str, str] | None = None,
    ready_timeout: float = 180.0,
    port: int | None = None,
    fitted: FittedRouting | None = None,
    tracer_provider: Any | None = None,
) -> Iterator[RunningServer]:
    """Start the server, wait until /readyz says every loadable expert is loaded."""
    runtime = Runtime(config, environ=environ)
    app = create_app(config, runtime, fitted=fitted, tracer_provider=tracer_provider)
    port = port or _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, ready_timeout, alive=thread.is_alive)
        yield RunningServer(url, runtime)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


class ProcessUrl(str):
    """A server's URL that also knows the server's process id."""

    pid: int


@contextmanager
def serve_process(
    config_text: str, folder: Path, *, ready_timeout: float = 180.0
) -> Iterator[ProcessUrl]:
    """``corral serve`` in a process of its own (fresh memory, as in production); yields
    its URL (with ``.pid``) once /readyz answers 200."""
    config = folder / "corral.yaml"
    config.write_text(config_text)
    port = _free_port()
    command = [sys.executable, "-m", "corral.cli", "serve", str(config), "--port", str(port)]
    env = {**os.environ, "CORRAL_LOG_LEVEL": "warning"}
    log = (folder / "server.log").open("wb")  # what a failing test shows of the server
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)
    url = ProcessUrl(f"http://127.0.0.1:{port}")
    url.pid = proc.pid
    try:
        _wait_ready(url, ready_timeout, alive=lambda: proc.poll() is None)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
