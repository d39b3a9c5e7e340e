"""/metrics: Prometheus names and labels, moving after real requests."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from ._server import RunningServer


def _samples(server: RunningServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reply = httpx.get(server.url + "/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(reply.text)
        for s in family.samples
    }


def _value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_move_after_real_requests(default_server: RunningServer) -> None:
    before = _samples(default_server)
    usage = 0
    for _ in range(3):
        reply = httpx.post(default_server.v1 + "/embeddings", json={"input": ["a", "b"]})
        assert reply.status_code == 200
        usage += reply.json()["usage"]["prompt_tokens"]
    assert (
        httpx.post(
            default_server.v1 + "/embeddings", json={"input": "x", "model": "nope"}
        ).status_code
        == 404
    )
    httpx.get(default_server.url + "/no/such/path")
    after = _samples(default_server)

    ok = dict(endpoint="/v1/embeddings", expert="embedder", route="default", status="200")
    assert (
        _value(after, "corral_requests_total", **ok) - _value(before, "corral_requests_total", **ok)
        == 3
    )
    failed = dict(endpoint="/v1/embeddings", expert="", route="", status="404")
    assert _value(after, "corral_requests_total", **failed) >= 1
    assert (
        _value(
            after, "corral_requests_total", endpoint="unmatched", expert="", route="", status="404"
        )
        >= 1
    )
    latency = dict(endpoint="/v1/embeddings", expert="embedder", route="default")
    assert _value(after, "corral_request_duration_seconds_count", **latency) >= 3
    assert (
        _value(after, "corral_batch_size_sum", expert="embedder")
        - _value(before, "corral_batch_size_sum", expert="embedder")
        >= 6
    )
    assert _value(after, "corral_queue_wait_seconds_count", expert="embedder") >= 3
    assert _value(after, "corral_model_load_seconds_count", expert="embedder") == 1
    tokens = dict(expert="embedder", direction="in")
    moved = _value(after, "corral_tokens_total", **tokens) - _value(
        before, "corral_tokens_total", **tokens
    )
    assert moved == usage  # exactly what the responses reported
    cost = _value(after, "corral_cost_total", expert="embedder") - _value(
        before, "corral_cost_total", expert="embedder"
    )
    llm_only = _value(after, "corral_llm_only_cost_total", expert="embedder") - _value(
        before, "corral_llm_only_cost_total", expert="embedder"
    )
    assert 0 < cost < llm_only  # the small expert is cheaper than the LLM doing the same
    assert _value(after, "corral_resident_bytes", expert="ner", device="cpu") > 0


def test_chat_tokens_in_and_out(default_server: RunningServer) -> None:
    before = _samples(default_server)
    reply = httpx.post(
        default_server.v1 + "/chat/completions",
        json={"model": "fast", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5},
        timeout=60,
    )
    usage = reply.json()["usage"]
    after = _samples(default_server)
    for direction, key in (("in", "prompt_tokens"), ("out", "completion_tokens")):
        labels = dict(expert="fast", direction=direction)
        moved = _value(after, "corral_tokens_total", **labels) - _value(
            before, "corral_tokens_total", **labels
        )
        assert moved == usage[key]
