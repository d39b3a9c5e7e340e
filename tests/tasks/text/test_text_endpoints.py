"""The text endpoints on the built-in default config, over HTTP with real clients and models."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator

import httpx
import numpy as np
import openai
import pytest

from corral._vectors import unit_rows
from corral.config import default_config
from corral.tasks.text.encoder_guard import MIN_COSINE
from tests._server import RunningServer

SENTENCES = [
    "The cat sits on the mat.",
    "A quarterly earnings report beat analyst expectations.",
    "corral routes each request to the smallest expert that can do the job.",
]


@pytest.fixture(scope="module")
def client(default_server: RunningServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=default_server.v1, api_key="unused", max_retries=0) as client:
        yield client


def test_openai_embeddings_equal_the_served_model_and_stay_near_torch(
    client, default_server: RunningServer, sentence_model
) -> None:
    """The default embedder runs on the fastest CPU path that passed the accuracy guard
    (runtime: auto): its vectors equal that model's own encode, and are within the
    guard's cosine of sentence-transformers' torch vectors."""
    response = client.embeddings.create(model="embedder", input=SENTENCES, encoding_format="float")
    got = np.array([d.embedding for d in response.data], dtype=np.float32)
    assert got.shape == (3, 384)
    np.testing.assert_allclose(got, default_server.encode("embedder", SENTENCES), atol=1e-5)
    want = sentence_model.encode(SENTENCES, convert_to_numpy=True)
    cosines = np.sum(unit_rows(got) * unit_rows(want), axis=1)
    assert cosines.min() >= MIN_COSINE, cosines
    runtime = default_server.runtime.handles["embedder"].expert.runtime_in_use  # type: ignore[union-attr]
    assert runtime == "openvino-int8", runtime  # corral[default] installs OpenVINO and NNCF
    assert [d.index for d in response.data] == [0, 1, 2]
    expected_tokens = sum(len(ids) for ids in sentence_model.tokenizer(SENTENCES)["input_ids"])
    assert response.usage.prompt_tokens == expected_tokens == response.usage.total_tokens


def test_openai_client_default_base64_equals_float(client) -> None:
    # The openai client asks for base64 unless told otherwise and decodes it itself.
    as_base64 = client.embeddings.create(model="embedder", input="hello world")
    as_float = client.embeddings.create(
        model="embedder", input="hello world", encoding_format="float"
    )
    np.testing.assert_allclose(as_base64.data[0].embedding, as_float.data[0].embedding, atol=1e-7)


def test_raw_base64_is_little_endian_float32(default_server: RunningServer) -> None:
    reply = httpx.post(
        default_server.v1 + "/embeddings",
        json={"input": ["hello world"], "encoding_format": "base64"},
    )
    vector = np.frombuffer(base64.b64decode(reply.json()["data"][0]["embedding"]), dtype="<f4")
    assert vector.shape == (384,)
    assert reply.headers["x-corral-expert"] == "embedder"
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4


def test_embeddings_dimensions_truncate_and_renormalise(client) -> None:
    response = client.embeddings.create(
        model="embedder", input="hello", dimensions=64, encoding_format="float"
    )
    vector = np.array(response.data[0].embedding)
    assert vector.shape == (64,)
    assert abs(np.linalg.norm(vector) - 1.0) < 1e-5


def test_models_lists_every_expert_with_task_and_state(client) -> None:
    models = {m.id: m for m in client.models.list().data}
    assert set(models) == {m.name for m in default_config().models} | {"auto"}
    card = models["reranker"].model_dump()
    assert card["task"] == "rerank" and card["backend"] == "bi-encoder" and card["state"] == "ready"


@pytest.mark.parametrize(
    ("query", "documents", "relevant"),
    [
        (
            "What is the capital of France?",
            [
                "Berlin is the capital of Germany.",
                "Paris is the capital of France.",
                "Bananas are yellow.",
            ],
            1,
        ),
        (
            "How do I reset my password?",
            [
                "To reset your password, click 'Forgot password' on the login page.",
                "Our office opens at 9am.",
                "The weather is sunny today.",
            ],
            0,
        ),
        (
            "symptoms of the flu",
            [
                "Stock markets rallied on Friday.",
                "The new phone has a larger screen.",
                "Influenza causes fever, cough, sore throat and body aches.",
            ],
            2,
        ),
    ],
)
def test_rerank_puts_relevant_passage_first(
    default_server: RunningServer, sentence_model, query, documents, relevant
) -> None:
    # Cohere shape: documents may be strings or {"text": ...}
    docs = [documents[0], {"text": documents[1]}, documents[2]]
    reply = httpx.post(
        default_server.v1 + "/rerank",
        json={"query": query, "documents": docs, "return_documents": True, "top_n": 2},
    )
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert len(results) == 2
    assert results[0]["index"] == relevant
    assert results[0]["document"]["text"] == documents[relevant]
    assert all(0.0 <= r["relevance_score"] <= 1.0 for r in results)
    # raw scores equal the bi-encoder's cosine computed directly
    raw = httpx.post(
        default_server.v1 + "/rerank", json={"query": query, "texts": documents, "raw_scores": True}
    ).json()["results"]
    q, *d = sentence_model.encode([query, *documents], normalize_embeddings=True)
    cosine = np.stack(d) @ q
    for r in raw:
        assert abs(r["relevance_score"] - cosine[r["index"]]) < 1e-5
        assert "document" not in r


def test_zero_shot_picks_obvious_labels(default_server: RunningServer) -> None:
    texts = [
        "The striker scored twice in the cup final.",
        "Shares fell sharply after the bank's quarterly earnings report.",
        "The prime minister called an early general election.",
        "The new smartphone ships with a faster processor and more memory.",
        "The film won best picture at the awards ceremony.",
    ]
    labels = ["sport", "business", "politics", "technology", "entertainment"]
    reply = httpx.post(default_server.v1 + "/classify", json={"input": texts, "labels": labels})
    assert reply.status_code == 200, reply.text
    data = reply.json()["data"]
    assert [d["label"] for d in data] == labels
    for d in data:
        scores = [s["score"] for s in d["labels"]]
        assert scores == sorted(scores, reverse=True)
        assert abs(sum(scores) - 1.0) < 1e-5


def test_multi_label_scores_are_independent(default_server: RunningServer) -> None:
    reply = httpx.post(
        default_server.v1 + "/classify",
        json={
            "input": "The football club's shares jumped on the stock exchange.",
            "labels": ["sport", "finance", "cooking"],
            "multi_label": True,
        },
    )
    scores = {s["label"]: s["score"] for s in reply.json()["data"][0]["labels"]}
    assert scores["cooking"] < min(scores["sport"], scores["finance"])
    assert sum(scores.values()) != pytest.approx(1.0)


def test_ner_finds_person_org_place_with_offsets(default_server: RunningServer) -> None:
    text = "Tim Cook met engineers at Apple in Cupertino on Monday."
    reply = httpx.post(default_server.v1 + "/ner", json={"input": [text]})
    assert reply.status_code == 200, reply.text
    entities = reply.json()["data"][0]["entities"]
    found = {(e["type"], e["text"]) for e in entities}
    assert {("PERSON", "Tim Cook"), ("ORG", "Apple"), ("GPE", "Cupertino")} <= found
    for e in entities:
        assert text[e["start"] : e["end"]] == e["text"]


def test_concurrent_requests_share_forward_passes(default_server: RunningServer) -> None:
    handle = default_server.runtime.handles["embedder"]
    assert handle.batcher is not None
    before = (handle.batcher.stats.batches, handle.batcher.stats.requests)
    sentences = [f"sentence number {i} about topic {i % 5}" for i in range(32)]

    async def run() -> list[list[float]]:
        async with httpx.AsyncClient(base_url=default_server.v1, timeout=60) as http:
            replies = await asyncio.gather(
                *(
                    http.post("/embeddings", json={"input": s, "encoding_format": "float"})
                    for s in sentences
                )
            )
        return [r.json()["data"][0]["embedding"] for r in replies]

    vectors = np.array(asyncio.run(run()), dtype=np.float32)
    batches = handle.batcher.stats.batches - before[0]
    requests = handle.batcher.stats.requests - before[1]
    assert requests == 32
    assert batches < 32, f"{batches} forward passes for 32 requests"
    np.testing.assert_allclose(vectors, default_server.encode("embedder", sentences), atol=1e-5)


def test_tokenizing_a_request_never_stalls_the_event_loop(default_server: RunningServer) -> None:
    """A text cut from its start is tokenized under the model lock a running forward pass
    holds: that waits on a thread, so the server answers everything else meanwhile."""
    passages = [f"{i} " + "the quick brown fox jumps over the lazy dog " * 30 for i in range(128)]
    cut = {"inputs": ["word " * 600], "truncate": True, "truncation_direction": "Left"}

    async def run() -> tuple[float, float, bool]:
        async with httpx.AsyncClient(base_url=default_server.url, timeout=120) as http:
            started = time.perf_counter()
            big = asyncio.create_task(
                http.post("/v1/embeddings", json={"model": "embedder", "input": passages})
            )
            await asyncio.sleep(0.5)  # its forward passes are running, holding the lock
            waiting = asyncio.create_task(http.post("/embed", json={**cut, "model": "embedder"}))
            await asyncio.sleep(0.1)
            asked = time.perf_counter()
            assert (await http.get("/healthz")).status_code == 200
            health, still_running = time.perf_counter() - asked, not big.done()
            replies = await asyncio.gather(big, waiting)
            assert [r.status_code for r in replies] == [200, 200], [r.text for r in replies]
            return health, time.perf_counter() - started, still_running

    health, total, still_running = asyncio.run(run())
    assert still_running, f"the big request ended within {total:.2f} s; make it bigger"
    assert health < 0.05 * total, f"/healthz took {health:.2f} s of the big request's {total:.2f} s"


def test_health_and_readiness(default_server: RunningServer) -> None:
    assert httpx.get(default_server.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(default_server.url + "/readyz").json()
    assert ready["ready"] is True
    assert httpx.get(default_server.url + "/docs").status_code == 200
