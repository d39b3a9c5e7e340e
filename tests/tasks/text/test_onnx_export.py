"""sentence-transformers models exported to ONNX by corral (options.runtime: onnx), over HTTP:
fp32 equal to a direct SentenceTransformer encode, int8 within the guard, the export cached
in the state dir and reused on the next start, a damaged cache re-exported, a CrossEncoder's
export ranking as torch does, and an export that fails leaving torch serving; the same
exports on OpenVINO (options.runtime: openvino), and NNCF's static int8 there (quantize:
int8), cached as model.xml + model.bin."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from corral._vectors import unit_rows
from corral.config import Config
from corral.tasks.text.encoder_guard import MIN_COSINE
from tests import tiny_models
from tests._server import RunningServer, serve

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
SENTENCES = [
    "The cat sits on the mat.",
    "A quarterly earnings report beat analyst expectations.",
    "corral routes each request to the smallest expert that can do the job.",
    " ".join(["A long text that the model cuts at its maximum length."] * 40),
]
QUERY = "How do I reset my password?"
DOCUMENTS = [
    "Open Settings and choose Reset password to change a forgotten password.",
    "Tomorrow will be sunny and warm with a light breeze.",
    "The home team won the final 2-1 after a late goal.",
    "Please pay the attached invoice within 30 days.",
    "Mix flour, cocoa and eggs, then bake for 35 minutes.",
]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self, expert: str, level: int = logging.INFO) -> list[str]:
        return [
            r.getMessage()
            for r in self.records
            if r.levelno >= level and r.getMessage().startswith(f"{expert}:")
        ]


@pytest.fixture(scope="module")
def records() -> Iterator[_Records]:
    handler = _Records()
    logger = logging.getLogger("corral.experts")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="module")
def cross_dir(tmp_path_factory: pytest.TempPathFactory, minilm_path: Path) -> Path:
    return tiny_models.cross_encoder(minilm_path, tmp_path_factory.mktemp("cross"))


def _config(state_dir: Path, models: list[dict[str, Any]]) -> Config:
    return Config.model_validate({"runtime": {"state_dir": str(state_dir)}, "models": models})


def _embedders() -> list[dict[str, Any]]:
    return [
        {"name": "fp32", "model": MINILM, "options": {"runtime": "onnx", "quantize": "none"}},
        {"name": "int8", "model": MINILM, "options": {"runtime": "onnx", "quantize": "int8"}},
        # the fp32 export (one cached file with "fp32") compiled by OpenVINO
        {"name": "ov", "model": MINILM, "options": {"runtime": "openvino"}},
        {"name": "ov8", "model": MINILM, "options": {"runtime": "openvino", "quantize": "int8"}},
    ]


@pytest.fixture(scope="module")
def server(state_dir: Path, cross_dir: Path, records: _Records) -> Iterator[RunningServer]:
    models = [
        *_embedders(),
        {"name": "ce-onnx", "model": str(cross_dir), "task": "rerank",
         "backend": "cross-encoder", "options": {"runtime": "onnx"}},
        {"name": "ce-torch", "model": str(cross_dir), "task": "rerank",
         "backend": "cross-encoder"},
        {"name": "ce-ov", "model": str(cross_dir), "task": "rerank",
         "backend": "cross-encoder", "options": {"runtime": "openvino"}},
        # opset 9 has no dynamic Slice: torch.onnx.export genuinely fails on BERT
        {"name": "ce-fails", "model": str(cross_dir), "task": "rerank",
         "backend": "cross-encoder", "options": {"runtime": "onnx", "opset": 9}},
    ]  # fmt: skip
    with serve(_config(state_dir, models)) as running:
        yield running


def _vectors(server: RunningServer, model: str, texts: list[str]) -> np.ndarray:
    reply = httpx.post(
        f"{server.v1}/embeddings",
        json={"model": model, "input": texts, "encoding_format": "float"},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    return np.array([d["embedding"] for d in reply.json()["data"]], dtype=np.float32)


def _cards(server: RunningServer) -> dict[str, Any]:
    return {c["id"]: c for c in httpx.get(f"{server.v1}/models", timeout=10).json()["data"]}


def _cached_files(state_dir: Path) -> list[Path]:
    return sorted((state_dir / "onnx").glob("*/model.onnx"))


def test_fp32_export_equals_a_direct_sentence_transformer_encode(
    server: RunningServer, sentence_model: Any
) -> None:
    want = sentence_model.encode(SENTENCES, convert_to_numpy=True)
    got = _vectors(server, "fp32", SENTENCES)
    # measured: max |difference| 1.6e-7 (the long text cut at 256 tokens included)
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert _cards(server)["fp32"]["runtime"] == "onnxruntime"


def test_mixed_lengths_run_in_length_groups_with_each_vector_as_if_alone(
    server: RunningServer,
) -> None:
    """A request of short and long texts runs in groups of similar length (a long one
    does not pad the short ones to its length); each vector equals the text's alone."""
    from corral.tasks.text.embed_onnx import length_groups

    texts = [f"query {i} about parcels" for i in range(9)] + [SENTENCES[3], SENTENCES[1]]
    lengths = [len(t.split()) for t in texts]
    assert len(length_groups(lengths)) == 2  # the nine queries, then the two long ones
    together = _vectors(server, "fp32", texts)
    alone = np.concatenate([_vectors(server, "fp32", [t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_int8_export_is_within_the_guard(server: RunningServer, sentence_model: Any) -> None:
    want = sentence_model.encode(SENTENCES, convert_to_numpy=True)
    got = _vectors(server, "int8", SENTENCES)
    cosines = np.sum(unit_rows(got) * unit_rows(want), axis=1)
    assert cosines.min() >= MIN_COSINE, cosines
    assert _cards(server)["int8"]["runtime"] == "onnxruntime-int8"


def test_openvino_runs_the_fp32_export_within_the_guard(
    server: RunningServer, sentence_model: Any
) -> None:
    pytest.importorskip("openvino")
    want = sentence_model.encode(SENTENCES, convert_to_numpy=True)
    got = _vectors(server, "ov", SENTENCES)
    # OpenVINO computes in bf16 on a CPU with bf16 instructions: measured max |difference|
    # 1.1e-3, worst cosine 0.99998 (in f32: equal to 1e-5)
    cosines = np.sum(got * want, axis=1) / np.linalg.norm(got, axis=1)
    assert cosines.min() >= 0.9999, cosines
    assert _cards(server)["ov"]["runtime"] in ("openvino", "openvino-bf16")


def test_openvino_cross_encoder_ranks_as_torch(server: RunningServer, records: _Records) -> None:
    """Served on OpenVINO when it passes the guard; in bf16 the random-init model's nearly
    tied scores reorder, and the guard refuses it: torch serves, with a warning."""
    pytest.importorskip("openvino")
    body = {"query": QUERY, "documents": DOCUMENTS}
    ranked = {}
    for model in ("ce-ov", "ce-torch"):
        reply = httpx.post(f"{server.v1}/rerank", json={**body, "model": model}, timeout=60)
        assert reply.status_code == 200, reply.text
        ranked[model] = reply.json()["results"]
    assert [r["index"] for r in ranked["ce-ov"]] == [r["index"] for r in ranked["ce-torch"]]
    np.testing.assert_allclose(
        [r["relevance_score"] for r in ranked["ce-ov"]],
        [r["relevance_score"] for r in ranked["ce-torch"]],
        atol=1e-4,
    )
    runtime = _cards(server)["ce-ov"]["runtime"]
    if runtime != "openvino":  # f32 passes; bf16 is refused on this random-init model
        assert runtime == "sentence-transformers/torch (openvino-bf16 refused)"
        assert any("refused by the accuracy guard" in m for m in records.lines("ce-ov"))


def test_openvino_int8_is_nncfs_static_int8_within_the_guard(
    server: RunningServer, state_dir: Path, sentence_model: Any
) -> None:
    pytest.importorskip("nncf")
    want = sentence_model.encode(SENTENCES, convert_to_numpy=True)
    got = _vectors(server, "ov8", SENTENCES)
    cosines = np.sum(unit_rows(got) * unit_rows(want), axis=1)
    assert cosines.min() >= MIN_COSINE, cosines
    assert _cards(server)["ov8"]["runtime"] == "openvino-int8"
    (xml,) = (state_dir / "onnx").glob("*/model.xml")
    assert xml.with_suffix(".bin").stat().st_size > 1_000_000
    assert '"engine": "openvino"' in (xml.parent / "manifest.json").read_text()


def test_int8_on_torch_is_a_503_naming_the_runtimes_that_run_it(state_dir: Path) -> None:
    spec = {"name": "bad", "model": MINILM, "options": {"runtime": "torch", "quantize": "int8"}}
    with serve(_config(state_dir, [spec])) as running:
        body = {"model": "bad", "input": "hi"}
        reply = httpx.post(f"{running.v1}/embeddings", json=body, timeout=30)
    assert reply.status_code == 503
    assert "options.runtime: onnx for ONNX Runtime" in reply.json()["error"]["message"]


def test_export_time_is_logged_and_the_file_cached(
    server: RunningServer, state_dir: Path, records: _Records
) -> None:
    for name in ("fp32", "int8", "ov8", "ce-onnx"):
        lines = records.lines(name)
        assert any("exporting" in line for line in lines), lines
        assert any("exported" in line and " s " in line for line in lines), lines
    # fp32 MiniLM, int8 MiniLM and the cross-encoder: three ONNX entries, and OpenVINO's
    # int8 MiniLM (model.xml), each with a manifest
    files = _cached_files(state_dir)
    assert len(files) == 3
    assert len(list((state_dir / "onnx").glob("*/model.xml"))) == 1
    assert all((f.parent / "manifest.json").is_file() for f in files)


def test_cross_encoder_export_ranks_as_torch(server: RunningServer) -> None:
    def rerank(model: str) -> list[dict[str, Any]]:
        body = {"model": model, "query": QUERY, "documents": DOCUMENTS}
        reply = httpx.post(f"{server.v1}/rerank", json=body, timeout=60)
        assert reply.status_code == 200, reply.text
        return list(reply.json()["results"])

    onnx, torch = rerank("ce-onnx"), rerank("ce-torch")
    assert [r["index"] for r in onnx] == [r["index"] for r in torch]
    np.testing.assert_allclose(
        [r["relevance_score"] for r in onnx], [r["relevance_score"] for r in torch], atol=1e-5
    )
    cards = _cards(server)
    assert cards["ce-onnx"]["runtime"] == "onnxruntime"
    assert cards["ce-torch"]["runtime"] == "sentence-transformers/torch"


def test_a_failing_export_falls_back_to_torch_with_a_warning(
    server: RunningServer, records: _Records
) -> None:
    assert _cards(server)["ce-fails"]["runtime"] == (
        "sentence-transformers/torch (onnx export failed)"
    )
    warned = records.lines("ce-fails", logging.WARNING)
    assert warned and "exporting" in warned[0] and "failed" in warned[0], warned
    body = {"model": "ce-fails", "query": QUERY, "documents": DOCUMENTS}
    torch = {"model": "ce-torch", "query": QUERY, "documents": DOCUMENTS}
    fails = httpx.post(f"{server.v1}/rerank", json=body, timeout=60).json()["results"]
    want = httpx.post(f"{server.v1}/rerank", json=torch, timeout=60).json()["results"]
    assert fails == want


def test_second_start_uses_the_cache_and_a_damaged_file_is_exported_again(
    server: RunningServer, state_dir: Path, records: _Records, sentence_model: Any
) -> None:
    by_key = {f.parent.name: f for f in _cached_files(state_dir)}
    manifests = {k: f.parent / "manifest.json" for k, f in by_key.items()}
    fp32_key = next(k for k, m in manifests.items() if '"quantize": "none"' in m.read_text()
                    and '"kind": "embed"' in m.read_text())  # fmt: skip
    int8 = next(f for k, f in by_key.items() if '"int8"' in manifests[k].read_text())
    int8_mtime = int8.stat().st_mtime_ns
    damaged = by_key[fp32_key]
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])  # truncated
    (ov8,) = (state_dir / "onnx").glob("*/model.xml")
    weights = ov8.with_suffix(".bin")
    weights.write_bytes(b"\0" * 64 + weights.read_bytes()[64:])  # same size, other bytes
    records.records.clear()
    with serve(_config(state_dir, _embedders())) as again:
        want = sentence_model.encode(SENTENCES, convert_to_numpy=True)
        np.testing.assert_allclose(_vectors(again, "fp32", SENTENCES), want, atol=1e-4)
        assert _cards(again)["int8"]["runtime"] == "onnxruntime-int8"
    assert any("using the cached ONNX export" in line for line in records.lines("int8"))
    assert not any("exporting" in line for line in records.lines("int8"))
    assert int8.stat().st_mtime_ns == int8_mtime
    warned = records.lines("fp32", logging.WARNING)
    assert warned and "exporting it again" in warned[0], warned
    assert any("exported" in line for line in records.lines("fp32"))
    assert damaged.stat().st_size > 1_000_000  # whole again
    # OpenVINO's int8: its .bin is part of the manifest's hash, so it is made again
    assert any("does not match its manifest" in m for m in records.lines("ov8", logging.WARNING))
    assert any("exported" in line for line in records.lines("ov8"))


def test_check_shows_the_runtime_asked_for(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from corral.cli import main

    config = tmp_path / "corral.yaml"
    config.write_text(
        "models:\n"
        f"  - {{name: int8, model: {MINILM}, options: {{runtime: onnx, quantize: int8}}}}\n"
        f"  - {{name: plain, model: {MINILM}}}\n"
    )
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["check", str(config)]) == 0
    rows = {line.split("│")[1].strip(): line for line in capsys.readouterr().out.splitlines()
            if line.count("│") > 4}  # fmt: skip
    assert "onnxruntime-int8" in rows["int8"] and "usable" in rows["int8"]
    # runtime: auto (the default) on this CPU: OpenVINO int8, corral[openvino] is installed
    assert "openvino-int8" in rows["plain"] and "usable" in rows["plain"]
