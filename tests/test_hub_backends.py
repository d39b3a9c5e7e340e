"""Hub-model backends (cross-encoder, NLI, fixed-label, token NER, ModernBERT embedder),
loaded the way the founding config's ids load: from the Hugging Face cache layout or an
explicit ``path:``, served over HTTP, and checked against a direct library call."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from corral._vectors import unit_rows
from corral.config import parse_config
from corral.tasks.text.encoder_guard import MIN_COSINE

from . import tiny_models
from ._server import RunningServer, serve

QUERY = "what is the capital of france"
DOCS = ["Paris is the capital of France.", "Berlin is in Germany.", "bananas", "a b c d e f g"]


@pytest.fixture(scope="module")
def hub(tmp_path_factory, minilm_path: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hub")
    cache = root / "hf-cache"
    return {
        "cache": cache,
        "reranker": tiny_models.as_hf_cache(
            cache, "cross-encoder/ms-marco-MiniLM-L-6-v2", tiny_models.cross_encoder, minilm_path
        ),
        "classifier": tiny_models.as_hf_cache(
            cache, "facebook/bart-large-mnli", tiny_models.nli_bart, minilm_path
        ),
        "embedder": tiny_models.as_hf_cache(
            cache, "nomic-ai/modernbert-embed-base", tiny_models.modernbert_embedder, minilm_path
        ),
        "sentiment": tiny_models.sentiment(minilm_path, root / "sentiment"),
        "tagger": tiny_models.token_classifier(minilm_path, root / "tagger"),
    }


@pytest.fixture(scope="module")
def server(hub: dict[str, Path]) -> Iterator[RunningServer]:
    config = parse_config(f"""
models:
  - name: embedder
    model: nomic-ai/modernbert-embed-base
  - name: reranker
    model: cross-encoder/ms-marco-MiniLM-L-6-v2
    batch: {{max_size: 8, max_wait_ms: 5}}
  - name: classifier
    model: facebook/bart-large-mnli
  - name: sentiment
    model: acme/sentiment-bert
    path: {hub["sentiment"]}
  - name: tagger
    model: acme/bert-ner
    path: {hub["tagger"]}
  - name: forecaster
    model: amazon/chronos-t5-base
""")
    with serve(config, environ={"HF_HUB_CACHE": str(hub["cache"])}) as running:
        yield running


def test_ids_resolve_through_the_hf_cache(server: RunningServer, hub) -> None:
    handles = server.runtime.handles
    assert handles["reranker"].resolved.path == hub["reranker"]
    assert handles["classifier"].resolved.backend == "nli"
    assert handles["sentiment"].resolved.backend == "sequence-classification"  # sniffed
    assert handles["tagger"].resolved.backend == "token-classification"  # sniffed


def test_modernbert_embeddings_equal_the_served_model_near_sentence_transformers(
    server: RunningServer, hub
) -> None:
    """runtime: auto serves the ModernBERT embedder's OpenVINO int8 export when it passes
    the guard (else torch): its vectors equal that model's encode and are near torch's."""
    from sentence_transformers import SentenceTransformer

    texts = ["hello world", "a much longer sentence with more tokens in it", "x"]
    reply = httpx.post(server.v1 + "/embeddings", json={"input": texts, "encoding_format": "float"})
    assert reply.status_code == 200, reply.text
    got = np.array([d["embedding"] for d in reply.json()["data"]], dtype=np.float32)
    np.testing.assert_allclose(got, server.encode("embedder", texts), atol=1e-5)
    want = SentenceTransformer(str(hub["embedder"]), device="cpu").encode(texts)
    cosines = np.sum(unit_rows(got) * unit_rows(want), axis=1)
    assert cosines.min() >= MIN_COSINE, cosines


def test_cross_encoder_scores_match_direct_call(server: RunningServer, hub) -> None:
    import torch
    from sentence_transformers import CrossEncoder

    direct = CrossEncoder(str(hub["reranker"]), device="cpu")
    logits = direct.predict([(QUERY, d) for d in DOCS], activation_fn=torch.nn.Identity())
    sigmoid = direct.predict([(QUERY, d) for d in DOCS])  # CrossEncoder's default: sigmoid
    reply = httpx.post(server.v1 + "/rerank", json={"query": QUERY, "documents": DOCS})
    scores = {r["index"]: r["relevance_score"] for r in reply.json()["results"]}
    for i in range(len(DOCS)):
        assert scores[i] == pytest.approx(float(sigmoid[i]), abs=1e-5)
        assert 0.0 <= scores[i] <= 1.0
    raw = httpx.post(
        server.v1 + "/rerank", json={"query": QUERY, "documents": DOCS, "raw_scores": True}
    )
    ranked = raw.json()["results"]
    assert [r["index"] for r in ranked] == list(np.argsort(-logits, kind="stable"))
    for r in ranked:
        assert r["relevance_score"] == pytest.approx(float(logits[r["index"]]), abs=1e-5)


def test_cross_encoder_batches_pairs_not_one_forward_per_pair(server: RunningServer) -> None:
    batcher = server.runtime.handles["reranker"].batcher
    assert batcher is not None
    before = batcher.stats.batches
    docs = [f"document {i}" for i in range(20)]
    reply = httpx.post(server.v1 + "/rerank", json={"query": QUERY, "documents": docs})
    assert reply.status_code == 200 and len(reply.json()["results"]) == 20
    assert batcher.stats.batches - before == 1  # 20 pairs, one predict call


@pytest.mark.parametrize("multi_label", [False, True])
def test_nli_matches_transformers_zero_shot_pipeline(
    server: RunningServer, hub, multi_label
) -> None:
    from transformers import pipeline

    texts = ["The striker scored twice.", "Shares fell after the report."]
    labels = ["sport", "business", "politics"]
    reply = httpx.post(
        server.v1 + "/classify",
        json={"model": "classifier", "input": texts, "labels": labels, "multi_label": multi_label},
    )
    assert reply.status_code == 200, reply.text
    direct = pipeline("zero-shot-classification", model=str(hub["classifier"]), device="cpu")
    for text, data in zip(texts, reply.json()["data"], strict=True):
        want = direct(text, candidate_labels=labels, multi_label=multi_label)
        assert [s["label"] for s in data["labels"]] == want["labels"]
        np.testing.assert_allclose([s["score"] for s in data["labels"]], want["scores"], atol=1e-5)


def test_fixed_label_classifier_uses_model_labels(server: RunningServer, hub) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    text = "I loved this film"
    reply = httpx.post(server.v1 + "/classify", json={"model": "sentiment", "input": text})
    assert reply.status_code == 200, reply.text
    got = {s["label"]: s["score"] for s in reply.json()["data"][0]["labels"]}
    model = AutoModelForSequenceClassification.from_pretrained(str(hub["sentiment"]))
    tokenizer = AutoTokenizer.from_pretrained(str(hub["sentiment"]))
    with torch.no_grad():
        probs = model(**tokenizer(text, return_tensors="pt")).logits.softmax(-1)[0]
    assert got == pytest.approx(
        {"negative": float(probs[0]), "neutral": float(probs[1]), "positive": float(probs[2])},
        abs=1e-5,
    )
    bad = httpx.post(
        server.v1 + "/classify", json={"model": "sentiment", "input": text, "labels": ["spam"]}
    )
    assert bad.status_code == 422 and "fixed labels" in bad.json()["error"]["message"]


def test_token_classification_entities_have_offsets_and_scores(server: RunningServer) -> None:
    text = "Angela Merkel visited Siemens in Munich."
    reply = httpx.post(server.v1 + "/ner", json={"model": "tagger", "input": [text, "nothing"]})
    assert reply.status_code == 200, reply.text
    data = reply.json()["data"]
    assert len(data) == 2
    for entity in data[0]["entities"]:  # random weights: any entities, but consistent ones
        assert text[entity["start"] : entity["end"]] == entity["text"]
        assert entity["type"] in {"PER", "ORG", "LOC"}
        assert 0.0 <= entity["score"] <= 1.0 and not math.isnan(entity["score"])


def test_expert_without_weights_is_503_naming_it(server: RunningServer) -> None:
    models = {m["id"]: m for m in httpx.get(server.v1 + "/models").json()["data"]}
    assert models["forecaster"]["state"] == "unavailable"
    assert "amazon/chronos-t5-base" in models["forecaster"]["reason"]
