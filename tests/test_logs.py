"""`corral serve` with JSON logs: every stderr line is one JSON object, and each API
request logs a line with its trace id, expert and route."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from ._server import _free_port

CONFIG = """
models:
  - name: embedder
    model: sentence-transformers/all-MiniLM-L6-v2
"""


def test_json_logs_carry_the_trace_id(tmp_path: Path) -> None:
    config = tmp_path / "corral.yaml"
    config.write_text(CONFIG)
    port = _free_port()
    env = {**os.environ, "CORRAL_LOG_FORMAT": "json", "CORRAL_LOG_LEVEL": "info"}
    command = [sys.executable, "-m", "corral.cli", "serve", str(config), "--port", str(port)]
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        reply = httpx.post(url + "/v1/embeddings", json={"input": "hello"}, timeout=30)
        assert reply.status_code == 200
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    lines = [json.loads(line) for line in stderr.decode().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert any(
        line["logger"] == "corral.runtime" and "loaded embedder" in line["message"]
        for line in lines
    )
    request = next(line for line in lines if line["logger"] == "corral.requests")
    assert request["trace_id"] == reply.headers["x-corral-trace-id"]
    assert request["path"] == "/v1/embeddings" and request["status"] == 200
    assert request["expert"] == "embedder" and request["route"] == "default"
