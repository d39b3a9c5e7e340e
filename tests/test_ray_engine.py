"""The same YAML on both engines: the text endpoints over HTTP, embedded and on Ray Serve
(a local single-node cluster started here on 127.0.0.1), with real models and clients.
The experts' own metrics (loads, resident bytes, batch sizes, queue waits) on each
engine's `/metrics`. Then what only Ray does: a replica killed mid-request, or killed
while its replacement loads, is replaced and the request succeeds on the replacement."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import ray
from prometheus_client.parser import text_string_to_metric_families
from ray import serve

from corral._vectors import unit_rows
from corral.config import default_config, parse_config
from corral.config_ray import RayModelConfig
from corral.engines.ray import deployment_options, expert_deployment_name, serving
from corral.errors import ConfigError
from corral.eval.invoices import make_invoice, render_pdf
from corral.tasks.text.encoder_guard import MIN_COSINE

from ._server import RunningServer, _free_port, _wait_ready

SENTENCES = [
    "The cat sits on the mat.",
    "A quarterly earnings report beat analyst expectations.",
    "corral routes each request to the smallest expert that can do the job.",
]
GREEDY = {"temperature": 0.0, "seed": 7, "max_tokens": 24}
QUESTION = [{"role": "user", "content": "What is 2 + 3? Answer with the number."}]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """A local one-node cluster bound to 127.0.0.1 with the machine's 2 cores."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        namespace="corral-test",
        log_to_driver=False,
    )
    try:
        yield
    finally:
        serve.shutdown()
        ray.shutdown()


TEXT_EXPERTS = {"fast", "embedder", "reranker", "classifier", "ner"}
RAY_EXPERTS = TEXT_EXPERTS | {"doc-parser"}  # and a reader of uploads, named by file_id


@pytest.fixture(scope="module")
def ray_url(ray_cluster: None) -> Iterator[str]:
    """The built-in default's text experts, chat LLM and documents reader on Ray Serve (the
    whole default would start a replica process per expert: 14 on 2 shared cores)."""
    config = default_config()
    routing = config.routing.model_copy(
        update={"routes": [r for r in config.routing.routes if r.target in TEXT_EXPERTS]}
    )
    text_only = config.model_copy(
        update={
            "models": [m for m in config.models if m.name in RAY_EXPERTS],
            "routing": routing,
        }
    )
    with serving(text_only, host="127.0.0.1", port=_free_port()) as url:
        _wait_ready(url, 240, alive=lambda: True)
        yield url


@pytest.fixture(scope="module", params=["embedded", "ray"])
def url(request: pytest.FixtureRequest) -> str:
    if request.param == "embedded":
        server: RunningServer = request.getfixturevalue("default_server")
        return server.url
    return str(request.getfixturevalue("ray_url"))


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0) as client:
        yield client


def _replica(name: str) -> Any:
    return serve.get_deployment_handle(expert_deployment_name(name), app_name="corral")


def _metrics(url: str) -> Callable[..., float]:
    """The app's /metrics now: ``value(sample_name, **labels)`` sums matching samples."""
    text = httpx.get(url + "/metrics", timeout=10).text
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]

    def value(name: str, **labels: str) -> float:
        return sum(
            s.value
            for s in samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    return value


async def _embed_concurrently(url: str, sentences: list[str]) -> list[list[float]]:
    async with httpx.AsyncClient(base_url=url + "/v1", timeout=60) as http:
        replies = await asyncio.gather(
            *(
                http.post("/embeddings", json={"input": s, "encoding_format": "float"})
                for s in sentences
            )
        )
    assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
    return [r.json()["data"][0]["embedding"] for r in replies]


@pytest.fixture(scope="module")
def served(minilm_path: Path) -> Callable[[list[str]], np.ndarray]:
    """A direct encode with the model the default embedder serves on both engines
    (runtime: auto: the OpenVINO int8 export in the session's state dir, which the embedded
    server and the replicas share), 64 texts a forward pass as the embedder runs them."""
    from corral.tasks.text.embed_onnx import OnnxSentenceEncoder
    from corral.tasks.text.onnx_export import OPSET, ExportOptions, cache_key, transformer_dir

    options = ExportOptions("embed", "int8", OPSET, "openvino")
    key = cache_key(transformer_dir(minilm_path), options)
    opened: list[OnnxSentenceEncoder] = []

    def encode(texts: list[str]) -> np.ndarray:
        if not opened:  # the servers export it on their first start
            xml = Path(os.environ["CORRAL_STATE_DIR"]) / "onnx" / key / "model.xml"
            opened.append(OnnxSentenceEncoder(xml, minilm_path, "cpu", None, "openvino"))
        parts = [texts[i : i + 64] for i in range(0, len(texts), 64)]
        return np.concatenate([opened[0].encode(part)[0] for part in parts])

    return encode


# --- the same tests on both engines ----------------------------------------------------
def test_embeddings_equal_the_served_model_and_stay_near_torch(
    client, sentence_model, url, served
) -> None:
    response = client.embeddings.create(model="embedder", input=SENTENCES, encoding_format="float")
    got = np.array([d.embedding for d in response.data], dtype=np.float32)
    want = served(SENTENCES)
    assert got.shape == (3, 384)
    np.testing.assert_allclose(got, want, atol=1e-5)
    torch = sentence_model.encode(SENTENCES, convert_to_numpy=True)
    assert np.sum(unit_rows(got) * unit_rows(torch), axis=1).min() >= MIN_COSINE
    expected_tokens = sum(len(ids) for ids in sentence_model.tokenizer(SENTENCES)["input_ids"])
    assert response.usage.prompt_tokens == expected_tokens
    # the base64 form the openai client asks for by default decodes to the same vectors
    as_base64 = client.embeddings.create(model="embedder", input=SENTENCES[0])
    np.testing.assert_allclose(as_base64.data[0].embedding, served(SENTENCES[:1])[0], atol=1e-5)


def test_cost_is_accounted_in_the_ingress(url) -> None:
    """The replica measures, the ingress prices: the trace carries the charge."""
    reply = httpx.post(url + "/v1/embeddings", json={"input": SENTENCES}, timeout=60)
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-corral-expert"] == "embedder"
    trace = httpx.get(url + f"/v1/traces/{reply.headers['x-corral-trace-id']}").json()
    (charge,) = trace["charges"]
    assert charge["expert"] == "embedder" and charge["device"] == "cpu"
    assert charge["tokens_in"] == reply.json()["usage"]["prompt_tokens"]
    assert 0 < charge["seconds"] < 10 and charge["cost"] > 0
    assert trace["decisions"][0]["stage"] == "default"


@pytest.mark.parametrize(
    ("query", "documents", "relevant"),
    [
        (
            "What is the capital of France?",
            ["Berlin is the capital of Germany.", "Paris is the capital of France.", "Bananas."],
            1,
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
    url, sentence_model, query, documents, relevant
) -> None:
    reply = httpx.post(
        url + "/v1/rerank",
        json={"query": query, "documents": documents, "return_documents": True, "top_n": 2},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert results[0]["index"] == relevant
    assert results[0]["document"]["text"] == documents[relevant]
    raw = httpx.post(
        url + "/v1/rerank", json={"query": query, "texts": documents, "raw_scores": True}
    ).json()["results"]
    q, *d = sentence_model.encode([query, *documents], normalize_embeddings=True)
    cosine = np.stack(d) @ q
    for r in raw:
        assert abs(r["relevance_score"] - cosine[r["index"]]) < 1e-5


def test_zero_shot_picks_obvious_labels(url) -> None:
    texts = [
        "The striker scored twice in the cup final.",
        "Shares fell sharply after the bank's quarterly earnings report.",
        "The prime minister called an early general election.",
    ]
    labels = ["sport", "business", "politics"]
    reply = httpx.post(url + "/v1/classify", json={"input": texts, "labels": labels}, timeout=60)
    assert reply.status_code == 200, reply.text
    data = reply.json()["data"]
    assert [d["label"] for d in data] == labels
    for d in data:
        assert abs(sum(s["score"] for s in d["labels"]) - 1.0) < 1e-5


def test_ner_finds_person_org_place(url) -> None:
    text = "Tim Cook met engineers at Apple in Cupertino on Monday."
    reply = httpx.post(url + "/v1/ner", json={"input": [text]}, timeout=60)
    assert reply.status_code == 200, reply.text
    found = {(e["type"], e["text"]) for e in reply.json()["data"][0]["entities"]}
    assert {("PERSON", "Tim Cook"), ("ORG", "Apple"), ("GPE", "Cupertino")} <= found


def test_chat_with_the_openai_client(client) -> None:
    reply = client.chat.completions.create(model="fast", messages=QUESTION, **GREEDY)
    assert "5" in (reply.choices[0].message.content or "")
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    chunks = list(
        client.chat.completions.create(
            model="fast",
            messages=QUESTION,
            stream=True,
            stream_options={"include_usage": True},
            **GREEDY,
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply.choices[0].message.content
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == reply.usage.completion_tokens


def test_semantic_route_to_the_classifier(url) -> None:
    """model "auto": the router (in the ingress) embeds, matches the triage route, runs
    the classifier deployment and answers directly from its result."""
    reply = httpx.post(
        url + "/v1/chat/completions",
        json={
            "model": "auto",
            "messages": [
                {"role": "user", "content": "Classify this support ticket: 'I was charged twice'"}
            ],
            "max_tokens": 24,
            "temperature": 0.0,
        },
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-corral-route"] == "semantic:ticket-triage"
    assert reply.headers["x-corral-expert"] == "classifier"
    stages = [d["stage"] for d in reply.json()["corral"]["decisions"]]
    assert stages[0] == "semantic"


def test_models_and_readiness(url) -> None:
    models = {m["id"]: m for m in httpx.get(url + "/v1/models").json()["data"]}
    assert set(models) >= TEXT_EXPERTS
    assert all(models[name]["state"] == "ready" for name in TEXT_EXPERTS)
    # embedded: the three MiniLM experts share one copy, counted on whichever loaded it
    # first (pre-warm puts last week's most used first); Ray: each replica has its own
    minilm = [models[n]["memory_bytes"] or 0 for n in ("embedder", "reranker", "classifier")]
    assert max(minilm) > 10 * 2**20
    assert httpx.get(url + "/readyz").json()["ready"] is True


def test_expert_metrics_on_the_metrics_endpoint(url) -> None:
    """Loads, resident bytes, batch sizes and queue waits are on /metrics on both
    engines (on Ray the replicas measure them and the ingress records them)."""
    before = _metrics(url)
    sentences = [f"metrics sentence {i} on topic {i % 3}" for i in range(16)]
    asyncio.run(_embed_concurrently(url, sentences))
    after = _metrics(url)

    def delta(name: str) -> float:
        return after(name, expert="embedder") - before(name, expert="embedder")

    assert delta("corral_batch_size_sum") == 16  # every item in some forward pass
    assert 1 <= delta("corral_batch_size_count") <= 16  # forward passes
    assert delta("corral_queue_wait_seconds_count") == 16  # one wait per request
    assert 0 <= delta("corral_queue_wait_seconds_sum") < 60
    for name in ("fast", "embedder", "reranker", "classifier", "ner"):
        assert after("corral_model_load_seconds_count", expert=name) >= 1, name
        assert after("corral_model_load_seconds_sum", expert=name) > 0, name
    # embedded: the MiniLM experts share one copy, counted on the first that loaded it
    minilm = [
        after("corral_resident_bytes", expert=n) for n in ("embedder", "reranker", "classifier")
    ]
    assert max(minilm) > 10 * 2**20
    assert after("corral_resident_bytes", expert="fast") > 10 * 2**20


# --- Ray only ---------------------------------------------------------------------------
def test_an_upload_to_the_ingress_is_read_by_the_replica(ray_url) -> None:
    """``POST /v1/files`` keeps the file in the ingress; the documents replica (another
    process) is sent its bytes, so extraction by ``file_id`` reads the upload."""
    invoice = make_invoice(random.Random(3))
    upload = httpx.post(
        ray_url + "/v1/files",
        files={"file": ("invoice.pdf", render_pdf(invoice), "application/pdf")},
        timeout=30,
    )
    assert upload.status_code == 200, upload.text
    reply = httpx.post(
        ray_url + "/v1/documents/extract",
        json={"model": "doc-parser", "file_id": upload.json()["id"]},
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    (page,) = reply.json()["pages"]
    assert page["source"] == "text"
    pairs = {kv["key"]: kv["value"] for kv in page["key_values"]}
    assert pairs["Invoice Number"] == invoice.number
    unknown = httpx.post(
        ray_url + "/v1/documents/extract",
        json={"model": "doc-parser", "file_id": "file-" + "0" * 24},
        timeout=30,
    )
    assert unknown.status_code == 404 and "file_id" in unknown.text, unknown.text


def test_concurrent_requests_are_batched_inside_the_replica(ray_url, served) -> None:
    before = _replica("embedder").batch_stats.remote().result()
    scraped = _metrics(ray_url)
    sentences = [f"sentence number {i} about topic {i % 5}" for i in range(32)]
    vectors = np.array(asyncio.run(_embed_concurrently(ray_url, sentences)), dtype=np.float32)
    after = _replica("embedder").batch_stats.remote().result()
    assert after.requests - before.requests == 32
    assert after.batches - before.batches < 32, "no micro-batching inside the replica"
    np.testing.assert_allclose(vectors, served(sentences), atol=1e-5)
    # the ingress's metrics have exactly the replica's forward passes
    now = _metrics(ray_url)
    passes = now("corral_batch_size_count", expert="embedder") - scraped(
        "corral_batch_size_count", expert="embedder"
    )
    assert passes == after.batches - before.batches


def test_killed_replica_is_replaced_and_the_request_retried(ray_url, served) -> None:
    """SIGKILL the embedder's only replica while it computes a large request: Serve
    starts a new one, the ingress retries there, the client gets the right vectors."""
    old = _replica("embedder").info.remote().result()
    texts = [
        f"item {i}: " + "the quick brown fox jumps over the lazy dog " * 40 for i in range(256)
    ]
    outcome: dict[str, Any] = {}

    def call() -> None:
        started = time.perf_counter()
        outcome["reply"] = httpx.post(
            ray_url + "/v1/embeddings",
            json={"input": texts, "encoding_format": "float"},
            timeout=180,
        )
        outcome["seconds"] = time.perf_counter() - started

    loads_before = _metrics(ray_url)("corral_model_load_seconds_count", expert="embedder")
    worker = threading.Thread(target=call)
    worker.start()
    time.sleep(1.0)  # the request is in the replica's forward passes (several seconds)
    assert worker.is_alive(), "the request finished before the kill: make it larger"
    os.kill(old.pid, signal.SIGKILL)
    worker.join(timeout=200)
    reply = outcome["reply"]
    assert reply.status_code == 200, reply.text
    new = _replica("embedder").info.remote().result()
    assert new.pid != old.pid and new.state == "ready"
    stats = _replica("embedder").batch_stats.remote().result()
    # /v1/embeddings sends 256 texts in parts of the embedder's batch (64): the new replica
    # served the retried part and the ones after it, and nothing else
    assert 1 <= stats.requests <= 4 and stats.items <= 256, stats
    got = np.array([d["embedding"] for d in reply.json()["data"][:4]], dtype=np.float32)
    np.testing.assert_allclose(got, served(texts[:64])[:4], atol=1e-5)  # its first part
    # the replacement's load reached the ingress's metrics with the retried request
    loads = _metrics(ray_url)("corral_model_load_seconds_count", expert="embedder")
    assert loads == loads_before + 1


def _replica_pids(deployment: str) -> set[int]:
    """Processes of a deployment's replicas, by the title Ray gives an actor's worker."""
    title = f"ray::ServeReplica:corral:{deployment}".encode()
    pids = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "cmdline").read_bytes().startswith(title):
                    pids.add(int(proc.name))
            except OSError:  # gone meanwhile
                continue
    return pids


def _starting(deployment: str) -> bool:
    """Serve has a replica of ``deployment`` starting and none running."""
    status = serve.status().applications["corral"].deployments[deployment]
    states = {str(getattr(k, "value", k)): n for k, n in status.replica_states.items()}
    return states.get("STARTING", 0) >= 1 and states.get("RUNNING", 0) == 0


def _wait_until_loading(deployment: str, known: set[int], timeout: float) -> int:
    """The pid of a new replica of ``deployment`` once it is loading its expert: Serve
    has not seen it start (its constructor runs the load) and it has imported torch,
    which only the load does (importing corral's replica code does not)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in _replica_pids(deployment) - known:
            try:
                torch_mapped = "libtorch_cpu" in Path(f"/proc/{pid}/maps").read_text()
            except OSError:
                continue
            if torch_mapped and _starting(deployment):
                return pid
        time.sleep(0.05)
    raise AssertionError(f"no replica of {deployment} was seen loading in {timeout:.0f}s")


def test_replica_killed_mid_load_is_replaced_and_the_request_served(
    ray_url, sentence_model
) -> None:
    """The reranker's replica dies; while its replacement is loading the model (the
    request waiting for it), the replacement is SIGKILLed too. Serve starts a third,
    which loads and serves the waiting request, with the right scores."""
    deployment = expert_deployment_name("reranker")
    first = _replica("reranker").info.remote().result()
    loads_before = _metrics(ray_url)("corral_model_load_seconds_count", expert="reranker")
    query = "What is the capital of France?"
    documents = ["Berlin is the capital of Germany.", "Paris is the capital of France.", "Bananas."]
    outcome: dict[str, Any] = {}

    def call() -> None:
        started = time.perf_counter()
        outcome["reply"] = httpx.post(
            ray_url + "/v1/rerank",
            json={"query": query, "documents": documents, "raw_scores": True},
            timeout=120,
        )
        outcome["seconds"] = time.perf_counter() - started

    started = time.perf_counter()
    os.kill(first.pid, signal.SIGKILL)
    loading = _wait_until_loading(deployment, {first.pid}, timeout=40)
    worker = threading.Thread(target=call)
    worker.start()  # routed to no replica (none is running): it waits for one
    time.sleep(0.3)
    assert _starting(deployment), "the load finished before the kill"
    os.kill(loading, signal.SIGKILL)  # mid-load
    worker.join(timeout=120)
    assert time.perf_counter() - started < 60
    reply = outcome["reply"]
    assert reply.status_code == 200, reply.text
    scores = {r["index"]: r["relevance_score"] for r in reply.json()["results"]}
    q, *d = sentence_model.encode([query, *documents], normalize_embeddings=True)
    np.testing.assert_allclose([scores[i] for i in range(3)], np.stack(d) @ q, atol=1e-5)
    final = _replica("reranker").info.remote().result()
    assert final.pid not in (first.pid, loading) and final.state == "ready"
    assert _replica("reranker").batch_stats.remote().result().requests == 1
    # the killed load never finished, so only the third replica's load is counted
    loads = _metrics(ray_url)("corral_model_load_seconds_count", expert="reranker")
    assert loads == loads_before + 1


# --- config: the per-model Ray settings ------------------------------------------------
def test_ray_settings_map_to_serve_options() -> None:
    config = parse_config(
        """
models:
  - name: embedder
    model: sentence-transformers/all-MiniLM-L6-v2
    batch: {max_size: 64}
    ray: {replicas: 3, num_cpus: 1, num_gpus: 0.5}
  - name: reranker
    model: sentence-transformers/all-MiniLM-L6-v2
    task: rerank
    ray: {autoscaling: {min_replicas: 0, max_replicas: 4}, max_ongoing_requests: 8}
  - name: classifier
    model: sentence-transformers/all-MiniLM-L6-v2
    task: classify
runtime:
  engine: ray
  ray: {address: auto, defaults: {num_cpus: 0.5, replicas: 2}}
"""
    )
    defaults = config.runtime.ray.defaults
    embed, rerank, classify = (
        deployment_options(m.ray, defaults, cpus=0.25, batch=m.batch.max_size)
        for m in config.models
    )
    assert embed == {
        "ray_actor_options": {"num_cpus": 1.0, "num_gpus": 0.5},
        "max_ongoing_requests": 64,
        "num_replicas": 3,
    }
    assert rerank["autoscaling_config"] == {
        "min_replicas": 0,
        "initial_replicas": 1,
        "max_replicas": 4,
        "target_ongoing_requests": 2.0,
    }
    assert "num_replicas" not in rerank and rerank["max_ongoing_requests"] == 8
    assert classify["num_replicas"] == 2 and classify["ray_actor_options"] == {"num_cpus": 0.5}
    assert deployment_options(None, RayModelConfig(), cpus=0.25, batch=32)["num_replicas"] == 1


@pytest.mark.parametrize(
    ("ray_block", "message"),
    [
        ("ray: {replicas: 2, autoscaling: {max_replicas: 3}}", "not both"),
        ("ray: {replica: 2}", "unknown key 'replica' (did you mean 'replicas'?)"),
        ("ray: {autoscaling: {min_replicas: 3, max_replicas: 2}}", "must not exceed"),
        ("ray: {num_cpus: -1}", "num_cpus"),
    ],
)
def test_bad_ray_settings_name_the_line(ray_block, message) -> None:
    text = f"models:\n  - name: e\n    model: sentence-transformers/all-MiniLM-L6-v2\n    {ray_block}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert any(p.startswith("line 4:") and message in p for p in info.value.problems), info.value
