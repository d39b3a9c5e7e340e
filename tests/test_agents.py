"""Agent tool loops through corral: a LangChain tool-calling agent and the openai SDK's own
loop complete a two-step tool task against a capable OpenAI-compatible upstream (scripted
here, as Ollama's qwen3 would behave), with every tool message passed through unchanged."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from corral.config import parse_config

from ._server import RunningServer, _free_port, serve

ORDERS = {"A17": {"customer": "C9"}}
CUSTOMERS = {"C9": {"name": "Ada Lovelace"}}


def _capable_llm(seen: list[dict[str, Any]]) -> FastAPI:
    """Reads the tool results it was given: order -> customer id -> customer name."""
    app = FastAPI()

    @app.post("/v1/chat/completions", response_model=None)
    async def complete(request: Request) -> dict[str, Any] | StreamingResponse:
        body = await request.json()
        seen.append(body)
        results = [json.loads(m["content"]) for m in body["messages"] if m["role"] == "tool"]
        if not results:
            message = _calls("c1", "lookup_order", {"order_id": "A17"})
        elif len(results) == 1:
            message = _calls("c2", "get_customer", {"customer_id": results[0]["customer"]})
        else:
            message = {"role": "assistant", "content": f"Order A17 is {results[1]['name']}'s."}
        if body.get("stream"):
            return StreamingResponse(_sse(message), media_type="text/event-stream")
        return {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": "capable",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }

    return app


def _sse(message: dict[str, Any]) -> Iterator[str]:
    chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "capable",
             "choices": [{"index": 0, "delta": message, "finish_reason": "stop"}]}
    yield f"data: {json.dumps(chunk)}\n\n"
    usage = {**chunk, "choices": [],
             "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}
    yield f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n"


def _calls(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    call = {"id": call_id, "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments)}}
    return {"role": "assistant", "content": None, "tool_calls": [call]}


def lookup_order(order_id: str) -> dict[str, str]:
    """Look up an order by its id."""
    return ORDERS[order_id]


def get_customer(customer_id: str) -> dict[str, str]:
    """Look up a customer by id."""
    return CUSTOMERS[customer_id]


TOOLS = {"lookup_order": lookup_order, "get_customer": get_customer}
QUESTION = "Whose order is A17?"


@pytest.fixture(scope="module")
def seen() -> list[dict[str, Any]]:
    return []


@pytest.fixture(scope="module")
def server(seen: list[dict[str, Any]]) -> Iterator[RunningServer]:
    port = _free_port()
    upstream = uvicorn.Server(
        uvicorn.Config(_capable_llm(seen), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=upstream.run, daemon=True)
    thread.start()
    while not upstream.started:
        time.sleep(0.05)
    config = parse_config(f"""
models:
  - name: capable
    model: qwen3:8b
    backend: openai
    base_url: http://127.0.0.1:{port}/v1
""")
    with serve(config) as running:
        yield running
    upstream.should_exit = True
    thread.join(timeout=10)


def _schema(function: Any) -> dict[str, Any]:
    parameter = next(iter(function.__annotations__))
    return {
        "type": "function",
        "function": {
            "name": function.__name__,
            "description": function.__doc__,
            "parameters": {"type": "object", "properties": {parameter: {"type": "string"}},
                           "required": [parameter]},
        },
    }


def test_langchain_tool_calling_agent_completes_two_steps(server: RunningServer, seen) -> None:
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    tools = {name: tool(function) for name, function in TOOLS.items()}
    llm = ChatOpenAI(base_url=server.v1, api_key="unused", model="capable", max_retries=0)
    agent = llm.bind_tools(list(tools.values()))
    messages: list[Any] = [HumanMessage(QUESTION)]
    for _ in range(4):
        reply = agent.invoke(messages)
        messages.append(reply)
        if not reply.tool_calls:
            break
        for call in reply.tool_calls:
            output = tools[call["name"]].invoke(call["args"])
            messages.append(ToolMessage(json.dumps(output), tool_call_id=call["id"]))
    assert messages[-1].content == "Order A17 is Ada Lovelace's."
    last = seen[-1]["messages"]  # what the upstream received on the final turn
    assert [m["role"] for m in last] == ["user", "assistant", "tool", "assistant", "tool"]
    assert last[2]["tool_call_id"] == "c1" and json.loads(last[4]["content"]) == CUSTOMERS["C9"]


def test_openai_sdk_tool_loop_streams_and_completes(server: RunningServer) -> None:
    client = openai.OpenAI(base_url=server.v1, api_key="unused", max_retries=0)
    messages: list[Any] = [{"role": "user", "content": QUESTION}]
    schemas = [_schema(f) for f in TOOLS.values()]
    for _ in range(4):
        reply = client.chat.completions.create(model="capable", messages=messages, tools=schemas)
        message = reply.choices[0].message
        messages.append(message.model_dump(exclude_none=True))
        if not message.tool_calls:
            break
        for call in message.tool_calls:
            output = TOOLS[call.function.name](**json.loads(call.function.arguments))
            messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(output)})
    assert messages[-1]["content"] == "Order A17 is Ada Lovelace's."
    streamed = client.chat.completions.create(
        model="capable", messages=messages[:-1], tools=schemas, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text == "Order A17 is Ada Lovelace's."
