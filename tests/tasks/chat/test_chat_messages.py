"""Every OpenAI message kind reaches a llama.cpp model's prompt, in the model's own chat template.

Two experts on the package-shipped SmolLM2 GGUF: ``fast`` with the template the GGUF carries
(generic ChatML: no tool syntax, no developer or tool role), and ``qwenish`` with a
Qwen-style template that declares tools, renders assistant calls and has a tool role.
The server logs at debug, so each trace holds the rendered prompt.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from corral.cli import main
from corral.config import parse_config
from corral.tasks.chat.template import CHATML, ChatTemplate
from corral.tasks.chat.tool_calls import HERMES, LLAMA3, MISTRAL, detect_format, forced_call
from tests._server import RunningServer, serve

QWEN_STYLE = (
    "{%- if tools %}<|im_start|>system\n{% if messages[0]['role'] == 'system' %}"
    "{{ messages[0]['content'] }}\n\n{% endif %}# Tools\n<tools>\n{% for tool in tools %}"
    "{{ tool | tojson }}\n{% endfor %}</tools>\nCall a tool with <tool_call>{\"name\": ..., "
    "\"arguments\": ...}</tool_call><|im_end|>\n{%- elif messages[0]['role'] == 'system' %}"
    "<|im_start|>system\n{{ messages[0]['content'] }}<|im_end|>\n{%- endif %}"
    "{%- for message in messages %}{%- if message.role == 'system' %}{%- continue %}{%- endif %}"
    "{%- if message.role == 'tool' %}\n<|im_start|>user\n<tool_response>\n{{ message.content }}"
    "\n</tool_response><|im_end|>{%- elif message.role == 'assistant' and message.tool_calls %}"
    "\n<|im_start|>assistant\n{{ message.content }}{%- for tc in message.tool_calls %}"
    "\n<tool_call>\n{\"name\": \"{{ tc.function.name }}\", \"arguments\": "
    "{{ tc.function.arguments | tojson }}}\n</tool_call>{%- endfor %}<|im_end|>"
    "{%- else %}\n<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>{%- endif %}"
    "{%- endfor %}{%- if add_generation_prompt %}\n<|im_start|>assistant\n{%- endif %}"
)
LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look up a door code",
        "parameters": {
            "type": "object",
            "properties": {"room": {"type": "integer"}},
            "required": ["room"],
        },
    },
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
GREEDY = {"temperature": 0.0, "seed": 7, "max_tokens": 24}
CALLING = {**GREEDY, "max_tokens": 64}  # a whole call, arguments and all


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    config = parse_config(
        f"""
models:
  - name: fast
    model: HuggingFaceTB/SmolLM2-135M-Instruct
  - name: qwenish
    model: HuggingFaceTB/SmolLM2-135M-Instruct
    options: {{chat_template: {json.dumps(QWEN_STYLE)}}}
observe: {{log_level: debug}}
"""
    )
    with serve(config) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.v1, api_key="unused", max_retries=0) as client:
        yield client


def _conversation(result: str) -> list[dict]:
    return [
        {"role": "developer", "content": "Answer in one short sentence. Rule: be kind."},
        {"role": "user", "content": [{"type": "text", "text": "What's the door code for 'room 12'?"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_7", "type": "function",
                 "function": {"name": "lookup", "arguments": '{"room": 12}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_7", "content": result},
    ]


def _prompt(server: RunningServer, reply: httpx.Response) -> str:
    trace = httpx.get(f"{server.v1}/traces/{reply.headers['x-corral-trace-id']}", timeout=10)
    prompts = trace.json()["prompts"]
    assert len(prompts) == 1
    return str(prompts[0])


@pytest.mark.parametrize("model", ["fast", "qwenish"])
def test_every_message_kind_reaches_the_prompt_verbatim(server: RunningServer, model: str) -> None:
    short = "The code is 4471."
    long = short + " " + " ".join(f"word{i}" for i in range(200))
    replies = [
        httpx.post(
            server.v1 + "/chat/completions",
            json={"model": model, "messages": _conversation(result), **GREEDY},
            timeout=120,
        )
        for result in (short, long)
    ]
    assert all(r.status_code == 200 for r in replies), replies[0].text
    tokens = [r.json()["usage"]["prompt_tokens"] for r in replies]
    assert tokens[1] > tokens[0] + 150  # the tool result is in the prompt, all of it
    prompt = _prompt(server, replies[0])
    assert "Rule: be kind." in prompt  # the developer message
    assert "What's the door code for 'room 12'?" in prompt  # a content part, unescaped
    assert "&#39;" not in prompt and "&#34;" not in prompt
    assert "The code is 4471." in prompt  # the tool result
    assert '"room": 12' in prompt  # the assistant's call


def test_a_longer_developer_message_costs_more_prompt_tokens(client: openai.OpenAI) -> None:
    def tokens(developer: str) -> int:
        reply = client.chat.completions.create(
            model="fast",
            messages=[{"role": "developer", "content": developer},
                      {"role": "user", "content": "Hi"}],  # type: ignore[list-item]
            **GREEDY,
        )
        assert reply.usage is not None
        return reply.usage.prompt_tokens

    assert tokens("Be brief. " * 50) > tokens("Be brief.") + 80


def test_a_tool_result_reaches_the_answer(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="fast", messages=_conversation("The door code for room 12 is 4471."), **GREEDY
    )  # type: ignore[arg-type]
    assert "4471" in (reply.choices[0].message.content or "")


def test_an_image_part_is_a_422_naming_it(server: RunningServer) -> None:
    messages = [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]}]
    reply = httpx.post(server.v1 + "/chat/completions",
                       json={"model": "fast", "messages": messages}, timeout=30)
    assert reply.status_code == 422, reply.text
    assert "messages[0].content[1]" in reply.json()["error"]["message"]


@pytest.mark.parametrize("model", ["fast", "qwenish"])
def test_required_picks_among_several_tools_and_streams_the_call(
    client: openai.OpenAI, model: str
) -> None:
    messages = [{"role": "user", "content": "What's the weather in Paris?"}]
    whole = client.chat.completions.create(
        model=model, messages=messages, tools=[LOOKUP, WEATHER], tool_choice="required", **CALLING
    )  # type: ignore[arg-type]
    calls = whole.choices[0].message.tool_calls or []
    assert len(calls) == 1 and calls[0].function.name in ("lookup", "get_weather")
    assert whole.choices[0].finish_reason == "tool_calls"
    json.loads(calls[0].function.arguments)
    chunks = list(client.chat.completions.create(
        model=model, messages=messages, tools=[LOOKUP, WEATHER], stream=True,
        tool_choice={"type": "function", "function": {"name": "get_weather"}}, **CALLING,
    ))  # type: ignore[call-overload]
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert deltas and deltas[0].function.name == "get_weather"
    arguments = "".join(d.function.arguments or "" for d in deltas)
    assert isinstance(json.loads(arguments).get("city", ""), str)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_legacy_functions_are_forced_calls(server: RunningServer) -> None:
    reply = httpx.post(server.v1 + "/chat/completions", timeout=60, json={
        "model": "fast", "messages": [{"role": "user", "content": "Weather in Rome?"}],
        "functions": [WEATHER["function"]], "function_call": {"name": "get_weather"}, **CALLING,
    })
    assert reply.status_code == 200, reply.text
    call = reply.json()["choices"][0]["message"]["function_call"]
    assert call["name"] == "get_weather" and isinstance(json.loads(call["arguments"]), dict)


QUESTIONS = ["What is the capital of France?", "What is 2 + 3?", "Name a primary colour.",
             "Say hello.", "What day comes after Monday?"]


def test_corral_ask_never_prints_tool_call_syntax(default_server: RunningServer, capsys) -> None:
    for question in QUESTIONS:
        assert main(["ask", question, "--max-tokens", "24", "--url", default_server.url]) == 0
        printed = capsys.readouterr().out
        assert printed.strip()
        for syntax in ("<tool_call>", "functions.", "&#34;", "&#39;", '"arguments"'):
            assert syntax not in printed, (question, printed)


# --- templates and formats, without a model ------------------------------------------


def test_a_template_without_system_role_gets_it_in_the_user_turn() -> None:
    no_system = (
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}"
        "<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
        "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
    )
    template = ChatTemplate(no_system, origin="test")
    assert "system" not in template.abilities.roles
    prompt = template.render(
        [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}], None
    )
    assert "<start_of_turn>user\nBe terse.\n\nHi<end_of_turn>" in prompt


def test_chatml_fallback_and_named_formats_render_every_kind() -> None:
    for template in (ChatTemplate(CHATML, origin="chatml"), ChatTemplate.named("llama-2")):
        prompt = template.render(_conversation("secret 9182"), [LOOKUP])
        assert "secret 9182" in prompt and "Rule: be kind." in prompt and '"lookup"' in prompt


def test_tool_formats_parse_their_own_calls() -> None:
    assert detect_format(QWEN_STYLE) is HERMES
    assert detect_format("{{ '[TOOL_CALLS]' }}") is MISTRAL
    assert detect_format("{{ '<|python_tag|>' }} ipython") is LLAMA3
    call = [{"function": {"name": "lookup", "arguments": '{"room": 3}'}}]
    for fmt in (HERMES, MISTRAL, LLAMA3):
        content, calls = fmt.parse("Sure. " + fmt.write(call) if fmt is not LLAMA3
                                   else fmt.write(call))
        assert calls == [{"name": "lookup", "arguments": {"room": 3}}], fmt.name
    content, calls = HERMES.parse('<tool_call>\n{"name": "a", "arguments": {}}\n</tool_call>\n'
                                  '<tool_call>{"name": "b", "arguments": {"x": 1}}</tool_call>')
    assert [c["name"] for c in calls] == ["a", "b"] and content == ""
    assert MISTRAL.parse('[TOOL_CALLS]lookup[ARGS]{"room": 5}')[1] == [
        {"name": "lookup", "arguments": {"room": 5}}
    ]
    assert LLAMA3.parse('{"name": "a", "parameters": {}}; {"name": "b", "parameters": {"y": 2}}')[
        1
    ] == [{"name": "a", "arguments": {}}, {"name": "b", "arguments": {"y": 2}}]
    # a forced call is the bare object the grammar allows, whatever the template's framing
    assert forced_call(' {"name": "lookup", "arguments": {"room": 5}}') == [
        {"name": "lookup", "arguments": {"room": 5}}
    ]
    assert forced_call('{"name": "lookup", "parameters": {}}') == [{"name": "lookup", "arguments": {}}]
    assert HERMES.parse("<tool_call>{broken")[1] == []  # the caller redoes it under a grammar
    assert HERMES.parse("Paris is the capital.") == ("Paris is the capital.", [])
