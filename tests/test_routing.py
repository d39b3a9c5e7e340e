"""The router over real HTTP: semantic routes on the built-in default config, traces,
per-expert timeouts, fallbacks and circuit breakers against real failing upstreams."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import httpx
import pytest

from corral.cli import main
from corral.config import parse_config
from corral.routing import FittedRouting

from ._server import RunningServer, _free_port, serve

TRIAGE = ["billing", "bug", "account access", "feature request"]  # the default route's labels


def _auto(server: RunningServer, content: str) -> httpx.Response:
    reply = httpx.post(
        server.v1 + "/chat/completions",
        json={
            "model": "auto",
            "messages": [{"role": "user", "content": content}],
            "temperature": 0,
            "max_tokens": 48,
        },
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    return reply


def _top_label(server: RunningServer, text: str, labels: list[str]) -> str:
    reply = httpx.post(server.v1 + "/classify", json={"input": text, "labels": labels})
    return str(reply.json()["data"][0]["label"])


@pytest.mark.parametrize("ticket", ["I was charged twice", "The app crashes when I press save"])
def test_ticket_question_is_routed_to_the_classifier_and_answered_with_its_label(
    default_server: RunningServer, ticket: str
) -> None:
    reply = _auto(default_server, f"Is this ticket about billing or a bug: '{ticket}'")
    assert reply.headers["x-corral-route"] == "semantic:ticket-triage"
    assert reply.headers["x-corral-expert"] == "classifier"
    body = reply.json()
    semantic = body["corral"]["decisions"][0]
    assert semantic["stage"] == "semantic" and semantic["choice"] == "ticket-triage"
    assert semantic["score"] >= 0.55
    tool, answer = body["corral"]["steps"]
    # the classifier read the quoted ticket, with the route's labels
    assert tool["kind"] == "tool" and tool["name"] == "classify_classifier"
    assert tool["arguments"] == {"texts": [ticket], "labels": TRIAGE}
    assert answer["kind"] == "llm" and answer["started"] >= tool["started"] + tool["seconds"]
    label = _top_label(default_server, ticket, TRIAGE)
    assert label == ("billing" if "charged" in ticket else "bug")
    assert label in body["choices"][0]["message"]["content"].lower()


def test_entity_question_is_routed_to_ner(default_server: RunningServer) -> None:
    reply = _auto(
        default_server, "Which companies are mentioned in: 'Apple hired Tim Cook in Cupertino'"
    )
    assert reply.headers["x-corral-route"] == "semantic:entities"
    tool = reply.json()["corral"]["steps"][0]
    assert tool["name"] == "ner_ner"
    assert tool["arguments"] == {"texts": ["Apple hired Tim Cook in Cupertino"]}
    found = {(e["text"], e["type"]) for e in tool["result"][0]["entities"]}  # the NER result
    assert {("Apple", "ORG"), ("Tim Cook", "PERSON"), ("Cupertino", "GPE")} <= found


@pytest.mark.parametrize("question", ["What is 2 + 3?", "Write a haiku about autumn"])
def test_unrelated_questions_fall_below_threshold_to_the_coordinator(
    default_server: RunningServer, question: str
) -> None:
    reply = _auto(default_server, question)
    assert reply.headers["x-corral-route"] == "coordinator"
    semantic, coordinator = reply.json()["corral"]["decisions"]
    assert semantic["choice"] == "" and semantic["score"] < 0.55
    assert "<" in semantic["reason"]
    assert coordinator["stage"] == "coordinator" and coordinator["choice"] == "fast"
    # SmolLM2-135M coordinates: whatever it decides, its calls parse (grammar), every step
    # is traced, and the request ends with an answer within max_steps (2) + 1 LLM turns
    body = reply.json()
    assert body["choices"][0]["message"]["role"] == "assistant"
    steps = body["corral"]["steps"]
    assert steps[0]["kind"] == "llm" and steps[-1]["kind"] == "llm"
    assert len([s for s in steps if s["kind"] == "llm"]) <= 2 + 1
    for step in steps:
        if step["kind"] == "tool":
            assert isinstance(step["arguments"], dict) or step["error"]


def test_trace_is_kept_and_served_by_id(default_server: RunningServer) -> None:
    reply = httpx.post(
        default_server.v1 + "/classify", json={"input": "I love it", "labels": ["joy", "anger"]}
    )
    trace_id = reply.headers["x-corral-trace-id"]
    assert reply.headers["x-corral-route"] == "default"
    trace = httpx.get(f"{default_server.v1}/traces/{trace_id}").json()
    assert trace["id"] == trace_id and trace["path"] == "/v1/classify"
    assert trace["status"] == 200 and trace["expert"] == "classifier"
    assert trace["decisions"][0]["stage"] == "default" and trace["seconds"] > 0
    missing = httpx.get(f"{default_server.v1}/traces/{'0' * 32}")
    assert missing.status_code == 404 and "no trace" in missing.json()["error"]["message"]


def test_errors_carry_the_trace_id(default_server: RunningServer) -> None:
    reply = httpx.post(default_server.v1 + "/classify", json={"input": "x", "model": "nope"})
    assert reply.status_code == 404
    assert reply.json()["error"]["trace_id"] == reply.headers["x-corral-trace-id"]


# --- timeouts, fallbacks and circuit breakers --------------------------------------------


@pytest.fixture(scope="module")
def silent_upstream() -> Iterator[str]:
    """A TCP server that accepts connections and never answers: a hung upstream."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


UPSTREAM_CONFIG = """
models:
  - name: fast
    model: HuggingFaceTB/SmolLM2-135M-Instruct
    default: true
"""


@pytest.fixture(scope="module")
def resilient(silent_upstream: str) -> Iterator[tuple[RunningServer, int]]:
    remote_port = _free_port()  # nothing listens here until the test starts a server
    config = parse_config(f"""
models:
  - name: fast
    model: HuggingFaceTB/SmolLM2-135M-Instruct
    default: true
  - name: remote
    model: remote-llm
    task: chat
    backend: openai
    base_url: http://127.0.0.1:{remote_port}/v1
    options: {{upstream_model: fast}}
  - name: hung
    model: hung-llm
    task: chat
    backend: openai
    base_url: {silent_upstream}
    timeout_s: 0.5
  - name: lonely
    model: lonely-llm
    task: chat
    backend: openai
    base_url: http://127.0.0.1:9/v1
  - name: embedder
    model: sentence-transformers/all-MiniLM-L6-v2
  - name: classifier
    model: sentence-transformers/all-MiniLM-L6-v2
    task: classify
routing:
  fallbacks: {{remote: [fast], hung: [fast]}}
  circuit: {{failures: 2, cooldown_s: 1.0}}
  routes:
    - name: sentiment
      target: classifier
      labels: [positive, negative]
      answer: direct
      examples: ["Is this review positive or negative?", "What is the sentiment of this text?"]
""")
    with serve(config) as running:
        yield running, remote_port


def _chat(server: RunningServer, model: str) -> httpx.Response:
    reply = httpx.post(
        server.v1 + "/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    return reply


def _decisions(server: RunningServer, reply: httpx.Response) -> list[dict[str, object]]:
    trace = httpx.get(f"{server.v1}/traces/{reply.headers['x-corral-trace-id']}").json()
    return list(trace["decisions"])


def test_hung_expert_times_out_and_its_fallback_answers(
    resilient: tuple[RunningServer, int],
) -> None:
    server, _ = resilient
    started = time.perf_counter()
    reply = _chat(server, "hung")
    assert time.perf_counter() - started < 30
    assert reply.headers["x-corral-expert"] == "fast"
    assert reply.headers["x-corral-route"] == "fallback"
    fallback = _decisions(server, reply)[-1]
    assert fallback["stage"] == "fallback" and fallback["choice"] == "fast"
    assert "longer than 0.5s" in str(fallback["reason"])


def test_circuit_opens_after_failures_and_closes_when_the_upstream_returns(
    resilient: tuple[RunningServer, int],
) -> None:
    server, remote_port = resilient
    for _ in range(2):  # upstream down: each request fails over to `fast`
        reply = _chat(server, "remote")
        assert reply.headers["x-corral-expert"] == "fast"
        assert "unreachable" in str(_decisions(server, reply)[-1]["reason"])
    reply = _chat(server, "remote")  # open: `remote` is not even tried
    stages = [d["stage"] for d in _decisions(server, reply)]
    assert stages == ["explicit", "circuit", "fallback"]
    assert reply.headers["x-corral-expert"] == "fast"

    with serve(parse_config(UPSTREAM_CONFIG), port=remote_port):
        time.sleep(1.1)  # the cooldown: then one trial request goes through
        for _ in range(2):
            reply = _chat(server, "remote")
            assert reply.headers["x-corral-expert"] == "remote"
            assert [d["stage"] for d in _decisions(server, reply)] == ["explicit"]
    metrics = httpx.get(server.url + "/metrics").text
    assert 'corral_fallbacks_total{expert="remote",fallback="fast"} 3.0' in metrics


def test_route_with_direct_answer_returns_the_expert_result_without_an_llm(
    resilient: tuple[RunningServer, int],
) -> None:
    server, _ = resilient
    reply = _auto(server, "Is this review positive or negative: 'What a wonderful film'")
    assert reply.headers["x-corral-route"] == "semantic:sentiment"
    body = reply.json()
    assert [s["kind"] for s in body["corral"]["steps"]] == ["tool"]
    result = json.loads(body["choices"][0]["message"]["content"])
    assert result[0]["labels"][0] == "positive"
    assert body["model"] == "classifier"


def test_route_thresholds_fitted_on_labelled_messages(tmp_path: Path) -> None:
    """`corral route fit --routes` on the default config's routes: each threshold lands
    between the scores of messages meant for the route and of those that are not."""
    config = tmp_path / "default.yaml"
    config.write_text(resources.files("corral").joinpath("default.yaml").read_text())
    tickets = ["I was charged twice", "The app crashes on start", "Add a dark mode please"]
    rows = [
        *(
            {"text": f"{ask}: '{t}'", "label": "ticket-triage"}
            for t in tickets
            for ask in (
                "Is this ticket about billing or a bug",
                "Which category is this support ticket",
            )
        ),
        *(
            {"text": f"{ask}: 'Apple hired Tim Cook in Cupertino'", "label": "entities"}
            for ask in (
                "Which companies are mentioned in",
                "Extract the people and places from",
                "List the organisations named in",
            )
        ),
        *(
            {"text": text, "label": "none"}
            for text in (
                "What is 2 + 3?",
                "Write a haiku about autumn",
                "Tell me a joke",
                "What is the capital of France?",
                "Summarise this: 'The meeting moved to Monday'",
            )
        ),
    ]
    data = tmp_path / "routes.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert main(["route", "fit", str(config), str(data), "--routes"]) == 0
    thresholds = FittedRouting.load(tmp_path / "default.fitted.json").route_thresholds
    assert {"ticket-triage", "entities"} <= set(thresholds)
    assert all(0.25 < thresholds[r] <= 1.0 for r in ("ticket-triage", "entities")), thresholds


def test_routes_are_skipped_not_fatal_when_the_embedder_is_unavailable(tmp_path: Path) -> None:
    config = parse_config(f"""
models:
  - name: fast
    model: HuggingFaceTB/SmolLM2-135M-Instruct
  - name: embedder
    model: sentence-transformers/all-MiniLM-L6-v2
    path: {tmp_path / "missing"}
routing:
  routes:
    - {{name: chit-chat, target: fast, examples: [hello there]}}
""")
    with serve(config) as server:
        reply = httpx.post(
            server.v1 + "/chat/completions",
            json={
                "model": "auto",
                "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 8,
            },
            timeout=60,
        )
    assert reply.status_code == 200, reply.text
    semantic, coordinator = reply.json()["corral"]["decisions"]
    assert semantic["stage"] == "semantic" and semantic["reason"].startswith("skipped:")
    assert "embedder" in semantic["reason"]
    assert coordinator["choice"] == "fast" and reply.headers["x-corral-route"] == "coordinator"


def test_open_circuit_without_fallback_is_503_with_retry_after_its_cooldown(
    resilient: tuple[RunningServer, int],
) -> None:
    server, _ = resilient
    body = {"model": "lonely", "messages": [{"role": "user", "content": "Hi"}]}
    for _ in range(2):  # down, no fallback: 503 naming it
        reply = httpx.post(server.v1 + "/chat/completions", json=body, timeout=30)
        assert reply.status_code == 503 and "'lonely'" in reply.json()["error"]["message"]
    reply = httpx.post(server.v1 + "/chat/completions", json=body, timeout=30)
    assert reply.status_code == 503
    assert "circuit is open" in reply.json()["error"]["message"]
    assert reply.headers["retry-after"] == "1"  # the 1 s cooldown, not a fixed 30
