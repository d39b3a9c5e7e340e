"""`corral pull` and `corral serve` fetching real (tiny) models through huggingface_hub
from a Hub-protocol fixture on 127.0.0.1, and Ollama ids through Ollama's /api/pull.

The CLI runs in subprocesses: huggingface_hub reads HF_ENDPOINT/HF_HUB_OFFLINE when it
is imported, and the test process itself runs with HF_HUB_OFFLINE=1 (conftest)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from corral.catalog import resolve
from corral.config import parse_config

from ._server import _free_port, _wait_ready
from .hub_fixture import Fault, HubFixture, OllamaFixture, Repo, folder_files, running
from .tiny_models import cross_encoder, modernbert_embedder, tiny_gguf

EMBED_ID = "nomic-ai/modernbert-embed-base"
RERANK_ID = "cross-encoder/ms-marco-MiniLM-L-6-v2"
GGUF_REPO = "TheBloke/deepseek-coder-6.7B-instruct-GGUF"
# files a repo holds that the backends must never fetch
NOISE = {"onnx/model.onnx": b"onnx" * 64, "flax_model.msgpack": b"flax" * 64, "README.md": b"# x"}

SEED_PART = f"""
models:
  - name: embedder
    model: {EMBED_ID}
  - name: reranker
    model: {RERANK_ID}
"""


@pytest.fixture(scope="module")
def hub(minilm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubFixture]:
    built = tmp_path_factory.mktemp("built")
    embed = folder_files(modernbert_embedder(minilm_path, built / "embed"))
    embed = {k: v for k, v in embed.items() if not k.startswith("backbone/")}
    rerank = folder_files(cross_encoder(minilm_path, built / "rerank"))
    rerank["pytorch_model.bin"] = b"legacy" * 64  # safetensors win over .bin
    # the picked quantisation is larger than huggingface_hub's 10 MiB read chunk, so a
    # connection cut after the first chunk resumes at a byte offset (a Range request)
    ggufs = {
        f"deepseek-coder-6.7b-instruct.{q}.gguf": tiny_gguf(built / f"{q}.gguf", q, n).read_bytes()
        for q, n in (("Q4_K_M", 3 * 2**20), ("Q8_0", 32))
    }
    fixture = HubFixture()
    fixture.repos = {
        EMBED_ID: Repo({**embed, **NOISE}),
        RERANK_ID: Repo({**rerank, **NOISE}),
        GGUF_REPO: Repo({**ggufs, "README.md": b"# GGUF"}),
        "acme/broken": Repo({"config.json": b"{}"}, listing_status=500),
        "acme/missing-file": Repo({"config.json": b"{}", "model.safetensors": b"w" * 64}),
        "acme/gated": Repo({"config.json": b"{}", "model.safetensors": b"g" * 64}, gated_token="hf_test"),
        "acme/huge": Repo({"config.json": b"{}"}, advertised={"model.safetensors": 2**60}),
    }
    fixture.faults[("acme/missing-file", "model.safetensors")] = Fault(status=404)
    fixture.faults[(GGUF_REPO, "deepseek-coder-6.7b-instruct.Q4_K_M.gguf")] = Fault(
        drop_after=10 * 2**20 + 1000
    )
    with running(fixture):
        yield fixture


def _env(home: Path, hub: HubFixture, **extra: str) -> dict[str, str]:
    drop = {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE", "HF_TOKEN", "OLLAMA_HOST"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, "HF_HOME": str(home), "HF_ENDPOINT": hub.url, "COLUMNS": "250", **extra}


def _corral(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "corral.cli", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)


def test_pull_fetches_only_what_backends_load_resumes_then_nothing(
    hub: HubFixture, tmp_path: Path
) -> None:
    config = tmp_path / "corral.yaml"
    config.write_text(
        SEED_PART + "  - name: coder\n    model: deepseek-ai/deepseek-coder-6.7b-instruct\n"
    )
    env = _env(tmp_path / "hf", hub)
    check = _corral("check", str(config), env=env).stdout
    gguf_bytes = len(hub.repos[GGUF_REPO].files["deepseek-coder-6.7b-instruct.Q4_K_M.gguf"])
    assert f"coder (deepseek-ai/deepseek-coder-6.7b-instruct): downloadable: {GGUF_REPO}: {gguf_bytes / 2**20:.1f} MiB to fetch" in check
    assert "0 of 3 experts can serve now (not yet: 3 downloadable)" in check
    first = _corral("pull", str(config), env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    out = first.stdout
    cache = tmp_path / "hf" / "hub"
    assert "ok     embedder: fetched" in out and f"{cache}/models--nomic-ai--modernbert-embed-base/snapshots/" in out
    assert "fetching 1_Pooling/config.json" not in out  # lines name repo/file
    assert f"fetching {EMBED_ID}/1_Pooling/config.json" in out
    assert "picked deepseek-coder-6.7b-instruct.Q4_K_M.gguf (Q4_K_M, default quantisation) of 2 GGUF files" in out
    assert "3 of 3 experts have what they need" in out
    fetched = hub.requests("GET", "/resolve/")
    assert not [p for p in fetched if p.endswith(tuple(NOISE)) or p.endswith(".bin")]
    assert not [p for p in fetched if "Q8_0" in p]
    assert (cache / "models--nomic-ai--modernbert-embed-base" / "refs" / "main").read_text() == hub.repos[EMBED_ID].commit
    # the GGUF download cut after 10 MiB went on from there: a Range request, then 206
    gguf_gets = [h.get("Range") for m, p, h in hub.log if m == "GET" and p.endswith("Q4_K_M.gguf")]
    assert gguf_gets == [None, f"bytes={10 * 2**20}-"], gguf_gets
    picked = next((cache / f"models--{GGUF_REPO.replace('/', '--')}" / "snapshots").glob("*/*.gguf"))
    assert picked.read_bytes() == hub.repos[GGUF_REPO].files[picked.name]

    before = len(hub.requests("GET", "/resolve/"))
    second = _corral("pull", str(config), env=env)
    assert second.returncode == 0 and "up to date" in second.stdout, second.stdout
    assert len(hub.requests("GET", "/resolve/")) == before  # a second pull downloads nothing

    # the loaders find the copy: the coder resolves to the one GGUF file picked
    parsed = parse_config(config.read_text())
    coder = resolve(parsed.models[2], parsed.runtime, {"HF_HOME": str(tmp_path / "hf")})
    assert coder.path is not None and coder.path.name.endswith("Q4_K_M.gguf")


def test_failures_name_expert_file_url_and_status(hub: HubFixture, tmp_path: Path) -> None:
    config = tmp_path / "corral.yaml"
    lines = ["models:"]
    for name in ("broken", "missing-file", "gated", "huge"):
        lines += [f"  - name: {name}", f"    model: acme/{name}", "    task: embed"]
    config.write_text("\n".join(lines) + "\n")
    env = _env(tmp_path / "hf", hub)
    result = _corral("pull", str(config), env=env)
    assert result.returncode == 1
    out = result.stdout
    assert (
        f"failed broken: expert 'broken': acme/broken: (file list): GET "
        f"{hub.url}/api/models/acme/broken/revision/main?blobs=true answered HTTP 500"
    ) in out
    assert (
        f"failed missing-file: expert 'missing-file': acme/missing-file: model.safetensors: GET "
        f"{hub.url}/acme/missing-file/resolve/{hub.repos['acme/missing-file'].commit}/"
        "model.safetensors answered HTTP 404; check the repo id, the file and `revision:`"
    ) in out
    assert "failed gated: expert 'gated': acme/gated: (file list): GET" in out
    assert "HTTP 401; the repo may be gated or private: set HF_TOKEN" in out
    assert "failed huge: expert 'huge': not enough disk space in" in out
    assert "the download needs 1048576.0 TiB (1152921504606846978 bytes) but" in out
    # refused before any byte: nothing of acme/huge was asked for, nothing written
    assert not hub.requests(None, "/acme/huge/resolve/")
    assert not (tmp_path / "hf" / "hub" / "models--acme--huge" / "blobs").exists()
    # no half files: the failed file left no blob, no snapshot entry
    missing = tmp_path / "hf" / "hub" / "models--acme--missing-file"
    assert not list(missing.rglob("model.safetensors")) and not list(missing.rglob("*.incomplete"))

    with_token = _corral("pull", str(config), "gated", env={**env, "HF_TOKEN": "hf_test"})
    assert with_token.returncode == 0 and "ok     gated: fetched 2 files" in with_token.stdout


def test_offline_never_opens_a_socket(hub: HubFixture, tmp_path: Path) -> None:
    config = tmp_path / "corral.yaml"
    config.write_text(SEED_PART)
    before = len(hub.log)
    probe = (
        "import sys\n"
        "connects = []\n"
        "sys.addaudithook(lambda event, args: connects.append(args) if event == 'socket.connect' else None)\n"
        "from corral.cli import main\n"
        f"code = main(['pull', {str(config)!r}])\n"
        "print('CONNECTS', len(connects), 'CODE', code)\n"
    )
    env = _env(tmp_path / "hf", hub, HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert "CONNECTS 0 CODE 1" in result.stdout, result.stdout + result.stderr
    assert f"not in {tmp_path / 'hf' / 'hub'} and HF_HUB_OFFLINE is set" in result.stdout
    assert len(hub.log) == before


def test_serve_downloads_resumes_and_answers(hub: HubFixture, tmp_path: Path) -> None:
    """`corral serve` on an empty cache: fetches both models (a connection dropped
    part-way through a weights file is retried), then serves them."""
    hub.faults[(EMBED_ID, "model.safetensors")] = Fault(drop_after=4096)
    config = tmp_path / "corral.yaml"
    config.write_text(SEED_PART)
    port = _free_port()
    log = (tmp_path / "serve.log").open("w")
    env = _env(tmp_path / "hf", hub, CORRAL_LOG_LEVEL="warning")
    command = [sys.executable, "-m", "corral.cli", "serve", str(config), "--port", str(port)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, 180, alive=lambda: proc.poll() is None)
        assert httpx.get(url + "/readyz").status_code == 200
        vectors = httpx.post(url + "/v1/embeddings", json={"model": "embedder", "input": ["a", "b c"]}).json()
        assert [len(d["embedding"]) for d in vectors["data"]] == [32, 32]
        ranked = httpx.post(
            url + "/v1/rerank", json={"model": "reranker", "query": "q", "documents": ["x", "y z"]}
        ).json()
        assert sorted(r["index"] for r in ranked["results"]) == [0, 1]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    text = (tmp_path / "serve.log").read_text()
    assert "peer closed connection without sending complete message body" in text
    assert "ok     embedder: fetched" in text and "ok     reranker: fetched" in text


def test_serve_has_ollama_pull_its_models(tmp_path: Path) -> None:
    ollama = OllamaFixture(pullable={"qwen3:8b": [3_000_000, 500]})
    config = tmp_path / "corral.yaml"
    config.write_text(
        "models:\n  - name: fast\n    model: qwen3:8b\n    default: true\n"
        "  - name: ghost\n    model: nosuch:1b\n"
    )
    with running(ollama):
        env = {**os.environ, "OLLAMA_HOST": ollama.url, "CORRAL_LOG_LEVEL": "warning"}
        port = _free_port()
        command = [sys.executable, "-m", "corral.cli", "serve", str(config), "--port", str(port)]
        log = (tmp_path / "serve.log").open("w")
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url, 120, alive=lambda: proc.poll() is None)
            ready = httpx.get(url + "/readyz")
            models = {m["id"]: m for m in httpx.get(url + "/v1/models").json()["data"]}
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()
    text = (tmp_path / "serve.log").read_text()
    assert f"fast: Ollama at {ollama.url} pulls qwen3:8b" in text
    assert "fetching qwen3:8b sha256:111111111111 (2.9 MiB)" in text
    assert "fetched  qwen3:8b sha256:222222222222 (500 B in" in text
    assert f"ok     fast: pulled qwen3:8b into Ollama at {ollama.url} (2.9 MiB)" in text
    assert (
        f"failed ghost: expert 'ghost': Ollama could not pull 'nosuch:1b': POST {ollama.url}/api/pull "
        "answered HTTP 200: pull model manifest: file does not exist; check the name and tag"
    ) in text
    assert ("POST", "/api/pull", '{"model": "qwen3:8b", "stream": true}') in ollama.log
    assert ready.status_code == 503 and list(ready.json()["unavailable"]) == ["ghost"]
    assert "does not have nosuch:1b" in ready.json()["unavailable"]["ghost"]
    assert models["fast"]["state"] == "ready" and models["ghost"]["state"] == "unavailable"


def test_serve_downloads_nothing_when_told_not_to(hub: HubFixture, tmp_path: Path) -> None:
    """`runtime.download: never` and `serve --offline`: the Hub is not asked at all."""
    from rich.console import Console

    from corral.pull.command import download_for_serve

    before = len(hub.log)
    for text, offline, why in (
        (SEED_PART + "runtime:\n  download: never\n", False, "runtime.download: never"),
        (SEED_PART, True, "--offline"),
    ):
        console = Console(record=True, width=200)
        download_for_serve(parse_config(text), console, offline=offline)
        assert f"downloads off ({why}): serving what is on disk" in console.export_text()
    assert len(hub.log) == before
