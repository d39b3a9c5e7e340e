"""/readyz is 503 while a configured expert is unavailable, saying which and why;
``server.readiness: any`` relaxes it; /v1/models shows an unreachable upstream as such."""

from __future__ import annotations

from pathlib import Path

import httpx

from corral.config import parse_config

from ._server import _free_port, serve


def _config(tmp_path: Path, extra: str = "") -> str:
    closed = _free_port()  # nothing listens there
    return f"""
models:
  - name: embedder
    model: sentence-transformers/all-MiniLM-L6-v2
    default: true
  - name: missing
    model: acme/not-here
    task: embed
  - name: remote
    model: some-llm
    task: chat
    backend: openai
    base_url: http://127.0.0.1:{closed}/v1
{extra}"""


def test_readyz_lists_unavailable_experts_and_can_be_relaxed(tmp_path: Path) -> None:
    environ = {"HF_HUB_CACHE": str(tmp_path)}
    with serve(parse_config(_config(tmp_path)), environ=environ) as server:
        ready = httpx.get(server.url + "/readyz")
        models = {m["id"]: m for m in httpx.get(server.v1 + "/models").json()["data"]}
    assert ready.status_code == 503
    body = ready.json()
    assert body["ready"] is False and body["loading"] is False
    assert body["experts"] == {"embedder": "ready", "missing": "unavailable", "remote": "unavailable"}
    assert "weights for 'acme/not-here' not found" in body["unavailable"]["missing"]
    assert "corral pull" in body["unavailable"]["missing"]
    assert body["unavailable"]["remote"].startswith("expert 'remote': upstream http://127.0.0.1:")
    assert "is unreachable (ConnectError)" in body["unavailable"]["remote"]
    assert models["remote"]["state"] == "unavailable" and "unreachable" in models["remote"]["reason"]
    assert models["embedder"]["state"] == "ready"

    relaxed = parse_config(_config(tmp_path, "server:\n  readiness: any\n"))
    with serve(relaxed, environ=environ) as server:
        ready = httpx.get(server.url + "/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert set(ready.json()["unavailable"]) == {"missing", "remote"}  # still said
