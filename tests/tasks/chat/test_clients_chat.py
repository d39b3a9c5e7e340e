"""LLM clients people already use, unchanged but for ``base_url``, against the built-in
default (SmolLM2 on llama.cpp): OpenAI's legacy completions and Responses API, chat
with every OpenAI parameter, LangChain's ChatOpenAI, LlamaIndex's OpenAILike."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests._server import RunningServer

GREEDY = {"temperature": 0.0, "seed": 7, "max_tokens": 24}
QUESTION = "What is 2 + 3? Answer with the number."
WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    """The HTTP client LangChain and LlamaIndex use (closed at the end, unlike their own)."""
    with httpx.Client(timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def client(default_server: RunningServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=default_server.v1, api_key="unused", max_retries=0) as client:
        yield client


def test_legacy_completions_whole_and_streamed(client: openai.OpenAI) -> None:
    whole = client.completions.create(model="gpt-4o-mini", prompt=QUESTION, **GREEDY)
    assert whole.object == "text_completion" and whole.model == "fast"
    assert "5" in whole.choices[0].text
    assert whole.usage is not None and whole.usage.completion_tokens > 0
    chunks = list(
        client.completions.create(model="fast", prompt=QUESTION, stream=True, **GREEDY)
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    echoed = client.completions.create(model="fast", prompt=QUESTION, echo=True, **GREEDY)
    assert echoed.choices[0].text == QUESTION + whole.choices[0].text


def test_responses_text_whole_and_streamed(client: openai.OpenAI) -> None:
    reply = client.responses.create(
        model="fast", input=QUESTION, max_output_tokens=24, temperature=0.0
    )
    assert reply.status == "completed" and "5" in reply.output_text
    assert reply.usage is not None and reply.usage.output_tokens > 0
    events = list(
        client.responses.create(
            model="fast", input=QUESTION, max_output_tokens=24, temperature=0.0, stream=True
        )
    )
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == reply.output_text
    assert events[-1].response.output_text == text
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_responses_remember_the_previous_response(client: openai.OpenAI) -> None:
    first = client.responses.create(
        model="fast",
        input="Remember this code word: PELICAN. Reply with OK.",
        max_output_tokens=16,
        temperature=0.0,
    )
    second = client.responses.create(
        model="fast",
        previous_response_id=first.id,
        input="What was the code word? Reply with the word only.",
        max_output_tokens=16,
        temperature=0.0,
    )
    assert "PELICAN" in second.output_text.upper()
    assert client.responses.retrieve(first.id).id == first.id
    with pytest.raises(openai.NotFoundError, match="no response"):
        client.responses.create(model="fast", previous_response_id="resp_nope", input="hi")


def test_responses_function_tool_round_trip(client: openai.OpenAI) -> None:
    tool = {"type": "function", **WEATHER}
    asked = client.responses.create(
        model="fast",
        input="What is the weather in Paris?",
        tools=[tool],  # type: ignore[list-item]
        tool_choice={"type": "function", "name": "get_weather"},
        max_output_tokens=32,
        temperature=0.0,
    )
    calls = [item for item in asked.output if item.type == "function_call"]
    assert calls and calls[0].name == "get_weather"
    assert isinstance(json.loads(calls[0].arguments)["city"], str)
    answered = client.responses.create(
        model="fast",
        previous_response_id=asked.id,
        input=[
            {
                "type": "function_call_output",
                "call_id": calls[0].call_id,
                "output": '{"temperature_c": 21, "sky": "clear"}',
            }
        ],
        tools=[tool],  # type: ignore[list-item]
        max_output_tokens=32,
        temperature=0.0,
    )
    assert answered.output_text.strip()


def test_chat_accepts_every_openai_parameter(
    client: openai.OpenAI, default_server: RunningServer
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": QUESTION}],
        frequency_penalty=0.0,
        presence_penalty=0.0,
        logit_bias={"9": -100},
        max_completion_tokens=24,
        metadata={"ticket": "T-7"},
        modalities=["text"],
        n=1,
        parallel_tool_calls=False,
        prompt_cache_key="k",
        reasoning_effort="low",
        safety_identifier="s",
        seed=7,
        service_tier="auto",
        stop=["\n\n"],
        store=False,
        temperature=0.0,
        top_p=1.0,
        user="end-user-7",
        verbosity="low",
    )
    reply = raw.parse()
    assert "5" in (reply.choices[0].message.content or "")
    ignored = set(raw.headers["x-corral-ignored"].split(","))
    assert ignored == {
        "modalities",
        "prompt_cache_key",
        "reasoning_effort",
        "safety_identifier",
        "service_tier",
        "store",
        "verbosity",
    }
    trace = httpx.get(
        default_server.v1 + "/traces/" + raw.headers["x-corral-trace-id"], timeout=10
    ).json()
    assert trace["user"] == "end-user-7" and trace["metadata"] == {"ticket": "T-7"}
    for _ in range(50):  # the usage row is written when the request has finished
        rows = httpx.get(default_server.v1 + "/usage", params={"group_by": "user"}).json()
        mine = [r for r in rows["data"] if r["user"] == "end-user-7"]
        if mine:
            break
        time.sleep(0.1)
    assert mine and mine[0]["requests"] >= 1 and mine[0]["tokens_out"] > 0


def test_legacy_functions_answer_with_function_call(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="fast",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        functions=[WEATHER],  # type: ignore[list-item]
        function_call={"name": "get_weather"},
        **GREEDY,
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "function_call" and not choice.message.tool_calls
    assert choice.message.function_call is not None
    assert choice.message.function_call.name == "get_weather"
    assert isinstance(json.loads(choice.message.function_call.arguments)["city"], str)


def test_langchain_chat_openai(default_server: RunningServer, http: httpx.Client) -> None:
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(
        base_url=default_server.v1,
        api_key="unused",
        model="gpt-4o-mini",
        temperature=0,
        http_client=http,
    )
    assert "5" in str(chat.invoke(QUESTION).content)


def test_llama_index_openai_like_default_uses_completions(
    default_server: RunningServer, http: httpx.Client
) -> None:
    from llama_index.llms.openai_like import OpenAILike

    llm = OpenAILike(
        model="fast", api_base=default_server.v1, api_key="unused", max_tokens=24, http_client=http
    )
    assert not llm.is_chat_model  # its default: the legacy /v1/completions
    assert "5" in llm.complete(QUESTION).text


def test_auto_is_listed_and_no_cors_without_config(default_server: RunningServer) -> None:
    ids = [m["id"] for m in httpx.get(default_server.v1 + "/models").json()["data"]]
    assert "auto" in ids
    reply = httpx.get(default_server.v1 + "/models", headers={"origin": "http://app.example"})
    assert "access-control-allow-origin" not in reply.headers
