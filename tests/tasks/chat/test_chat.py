"""/v1/chat/completions with the official openai client, on the package-shipped SmolLM2 GGUF
(llama.cpp in process, the built-in default config)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import jsonschema
import openai
import pytest

from corral.config import parse_config
from tests._server import RunningServer, serve

GREEDY = {"temperature": 0.0, "seed": 7, "max_tokens": 24}
QUESTION = [{"role": "user", "content": "What is 2 + 3? Answer with the number."}]


@pytest.fixture(scope="module")
def client(default_server: RunningServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=default_server.v1, api_key="unused", max_retries=0) as client:
        yield client


def test_non_streaming_answer_with_real_usage(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="fast", messages=QUESTION, **GREEDY)
    assert reply.model == "fast"
    assert "5" in (reply.choices[0].message.content or "")
    usage = reply.usage
    assert usage is not None and usage.prompt_tokens > 5 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_default_chat_expert_answers_when_model_omitted(default_server: RunningServer) -> None:
    reply = httpx.post(
        default_server.v1 + "/chat/completions", json={"messages": QUESTION, **GREEDY}, timeout=60
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-corral-expert"] == "fast"


def test_streaming_reassembles_to_the_same_text(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model="fast", messages=QUESTION, **GREEDY)
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
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])
    no_usage = list(
        client.chat.completions.create(model="fast", messages=QUESTION, stream=True, **GREEDY)
    )
    assert all(c.usage is None for c in no_usage) and all(c.choices for c in no_usage)


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def test_tool_call_round_trip(client: openai.OpenAI) -> None:
    messages: list = [{"role": "user", "content": "What is the weather in Paris?"}]
    reply = client.chat.completions.create(
        model="fast",
        messages=messages,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        **GREEDY,
    )
    calls = reply.choices[0].message.tool_calls
    assert calls and calls[0].function.name == "get_weather"
    arguments = json.loads(calls[0].function.arguments)
    assert isinstance(arguments["city"], str)
    messages += [
        reply.choices[0].message.model_dump(exclude_none=True),
        {
            "role": "tool",
            "tool_call_id": calls[0].id,
            "content": '{"temperature_c": 21, "sky": "clear"}',
        },
    ]
    final = client.chat.completions.create(model="fast", messages=messages, **GREEDY)
    assert final.choices[0].message.content


def test_json_schema_response_validates(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    reply = client.chat.completions.create(
        model="fast",
        messages=[{"role": "user", "content": "Invent a person. Reply in JSON with name and age."}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": schema},
        },
        temperature=0.0,
        seed=7,
        max_tokens=64,
    )
    jsonschema.validate(json.loads(reply.choices[0].message.content or ""), schema)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "role"),
        (
            {
                "messages": QUESTION,
                "tools": [
                    {
                        "type": "function",
                        "function": {"name": "f", "parameters": {"type": "objekt"}},
                    }
                ],
            },
            "not a valid JSON Schema",
        ),
        (
            {
                "messages": QUESTION,
                "tool_choice": {"type": "function", "function": {"name": "nope"}},
            },
            "tool_choice",
        ),
        ({"messages": QUESTION, "n": 3}, "n"),
        ({"messages": QUESTION, "logprobs": True}, "options: {logprobs: true}"),
        ({"messages": QUESTION, "model": "embedder"}, "available: fast"),
    ],
)
def test_bad_chat_requests_are_4xx(default_server: RunningServer, body: dict, needle: str) -> None:
    reply = httpx.post(default_server.v1 + "/chat/completions", json=body, timeout=30)
    assert 400 <= reply.status_code < 500, reply.text
    assert needle in reply.json()["error"]["message"]


def test_context_overflow_is_400(default_server: RunningServer) -> None:
    long = "tell me about corral " * 1500  # well past the 2048-token context
    reply = httpx.post(
        default_server.v1 + "/chat/completions",
        json={"messages": [{"role": "user", "content": long}], "max_tokens": 8},
        timeout=120,
    )
    assert reply.status_code == 422, reply.text
    assert "context" in reply.json()["error"]["message"]
    ok = httpx.post(
        default_server.v1 + "/chat/completions", json={"messages": QUESTION, **GREEDY}, timeout=60
    )
    assert ok.status_code == 200  # still serving


def test_logprobs_when_the_expert_keeps_them() -> None:
    """`options: {logprobs: true}`: OpenAI-shaped logprobs come back as JSON, and an LLM
    classifying on /v1/classify reports the probability of the label it chose."""
    config = parse_config("""
models:
  - name: fast
    model: HuggingFaceTB/SmolLM2-135M-Instruct
    options: {logprobs: true}
""")
    with serve(config) as server:
        reply = httpx.post(
            server.v1 + "/chat/completions",
            json={"messages": QUESTION, "logprobs": True, "top_logprobs": 1, "max_tokens": 8},
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
        tokens = reply.json()["choices"][0]["logprobs"]["content"]
        assert tokens and all(t["logprob"] <= 0 for t in tokens)
        labels = ["sport", "business"]
        reply = httpx.post(
            server.v1 + "/classify",
            json={"model": "fast", "input": ["The striker scored"], "labels": labels},
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
        item = reply.json()["data"][0]
        assert item["label"] in labels and 0 < item["confidence"] <= 1
