"""JSON schemas that once crashed llama.cpp (SIGSEGV: the converter wrote GBNF its parser
rejects) are answered or refused with a 422, over HTTP, against the real SmolLM2 GGUF in a
server process of its own (so a crash shows as that process dying, not this test's);
and 200 random patterns and property names, in response_format and in forced tools,
streamed or not, leave the server up with only 200s and 422s."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral.tasks.chat.grammar_safety import UnsafeSchema, check_schema, pattern_gbnf
from tests._server import ProcessUrl, serve_process

pytest.importorskip("llama_cpp")

CONFIG = """
models:
  - name: fast
    model: HuggingFaceTB/SmolLM2-135M-Instruct
    options: {n_ctx: 1024, n_threads: 2}
"""
ASK = [{"role": "user", "content": "Reply with JSON."}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessUrl]:
    with serve_process(CONFIG, tmp_path_factory.mktemp("grammar")) as url:
        yield url


def _string_schema(pattern: str) -> dict[str, Any]:
    return {"type": "object", "properties": {"v": {"type": "string", "pattern": pattern}},
            "required": ["v"]}


def _named_schema(name: str) -> dict[str, Any]:
    return {"type": "object", "properties": {name: {"type": "string", "maxLength": 3}},
            "required": [name]}


def _response_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}


def _forced_tool(schema: dict[str, Any]) -> dict[str, Any]:
    tool = {"type": "function", "function": {"name": "record", "parameters": schema}}
    return {"tools": [tool], "tool_choice": {"type": "function", "function": {"name": "record"}}}


def _chat(url: str, extra: dict[str, Any], *, stream: bool = False) -> httpx.Response:
    body = {"model": "fast", "messages": ASK, "max_tokens": 6, "temperature": 0.7,
            "stream": stream, **extra}
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=60)


KNOWN_CRASHERS = [
    ("response_format", _string_schema(r"^[\d]$")),
    ("tools", _string_schema(r"^[\w]+$")),
    ("response_format", _string_schema(r"^\S+$")),
    ("response_format", _string_schema(r"^[a-z]{2}\.$")),
    ("response_format", _named_schema('a"\\')),
    ("tools", _named_schema('a"\\')),
    ("response_format", {"type": "string", "enum": ['"', "\\"]}),
]


@pytest.mark.parametrize("stream", [False, True])
def test_known_crashers_are_served(server: ProcessUrl, stream: bool) -> None:
    for where, schema in KNOWN_CRASHERS:
        extra = (
            {"response_format": _response_format(schema)}
            if where == "response_format"
            else _forced_tool(schema)
        )
        reply = _chat(server, extra, stream=stream)
        assert reply.status_code == 200, (where, schema, reply.text)
    assert httpx.get(server + "/healthz", timeout=5).status_code == 200


def test_a_classify_through_the_llm_with_quote_and_backslash_labels(server: ProcessUrl) -> None:
    schema = {"type": "object", "properties": {"label": {"type": "string", "enum": ['"', "\\"]}},
              "required": ["label"]}
    reply = _chat(server, {"response_format": _response_format(schema), "max_tokens": 12})
    assert reply.status_code == 200, reply.text
    content = reply.json()["choices"][0]["message"]["content"]
    if content.rstrip().endswith("}"):  # a whole reply is one of the labels
        assert json.loads(content)["label"] in ('"', "\\")


def test_unsafe_patterns_are_a_422_naming_the_schema_path(server: ProcessUrl) -> None:
    for pattern, says in [("^(?=a)b$", "lookahead"), (r"^(a)\1$", "backreference"),
                          (r"^a{1000}$", "repetition"), (r"\bword", "'^', '$'")]:
        reply = _chat(server, {"response_format": _response_format(_string_schema(pattern))})
        assert reply.status_code == 422, (pattern, reply.text)
        message = reply.json()["error"]["message"]
        assert "properties.v.pattern" in message and says in message, message
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(40):
        deep = {"type": "array", "items": deep}
    reply = _chat(server, _forced_tool({"type": "object", "properties": {"d": deep}}))
    assert reply.status_code == 422 and "deeper than" in reply.text, reply.text


def test_translated_patterns_generate_what_they_match(server: ProcessUrl) -> None:
    """The whitelist's translation is the pattern's meaning: what the grammar lets the
    model write matches the regex (checked by Python's ``re`` on the JSON-decoded text)."""
    import re

    for pattern in [r"^\d{3}-\d{2}$", r"^[\w]{2,4}$", r"^(yes|no)$", r"^[^\s\d]{3}$"]:
        reply = _chat(server, {"response_format": _response_format(_string_schema(pattern)),
                               "max_tokens": 24})
        assert reply.status_code == 200, reply.text
        content = reply.json()["choices"][0]["message"]["content"]
        if reply.json()["choices"][0]["finish_reason"] == "stop":
            assert re.fullmatch(pattern[1:-1], json.loads(content)["v"]), (pattern, content)


# --- the fuzz ------------------------------------------------------------------------
_PATTERN_PIECES = [
    "a", "Z", "0", "-", ".", "\\d", "\\w", "\\s", "\\D", "\\W", "\\S", "\\.", "\\-", "\\\\",
    '"', "'", "[", "]", "[^", "(", ")", "(?:", "(?=", "(?!", "(?<=", "(?P<n>", "|", "*", "+",
    "?", "*?", "{2}", "{1,3}", "{2,}", "{0,200}", "^", "$", "\\b", "\\1", "\\n", "\\t",
    "\\u0041", "\\x41", "é", "日", "\U0001f600", "\u202e", "\x00", "a-z", "0-9", "\\[", "\\]",
    "{", "}", "/", "#",
]
_NAME_PIECES = ['"', "\\", "a", " ", "\n", "\t", "\x01", "é", "日", "\u202e", "{", "}", ":",
                ",", "[", "]", "::=", "|", "root", "$ref", "\\u0000", "'", "\U0001f600"]


def _random_pattern(rng: random.Random) -> str:
    return "".join(rng.choice(_PATTERN_PIECES) for _ in range(rng.randint(1, 8)))


def _random_name(rng: random.Random) -> str:
    return "".join(rng.choice(_NAME_PIECES) for _ in range(rng.randint(1, 6)))


def _fuzz_cases(count: int) -> list[tuple[str, dict[str, Any], bool]]:
    rng = random.Random(19)
    cases = []
    for i in range(count):
        schema = _string_schema(_random_pattern(rng)) if i % 2 == 0 else _named_schema(
            _random_name(rng)
        )
        cases.append(("tools" if i % 4 in (1, 2) else "response_format", schema, i % 5 == 0))
    return cases


def test_200_random_patterns_and_names_leave_the_server_up(server: ProcessUrl) -> None:
    statuses: dict[int, int] = {}
    for where, schema, stream in _fuzz_cases(200):
        extra = (
            {"response_format": _response_format(schema)}
            if where == "response_format"
            else _forced_tool(schema)
        )
        try:
            reply = _chat(server, {**extra, "max_tokens": 4}, stream=stream)
        except httpx.HTTPError as exc:  # the server process died (or hung) on this input
            pytest.fail(f"server gone after {where} {json.dumps(schema)}: {exc!r}")
        assert reply.status_code in (200, 422), (where, schema, reply.text)
        if reply.status_code == 422:
            assert reply.json()["error"]["message"], reply.text
        statuses[reply.status_code] = statuses.get(reply.status_code, 0) + 1
    print(f"grammar fuzz: {statuses}")
    assert statuses.get(200, 0) >= 50  # most inputs are served, not refused wholesale
    assert httpx.get(server + "/healthz", timeout=5).status_code == 200


def test_the_check_agrees_with_the_translation() -> None:
    """A pattern ``check_schema`` passes is one ``pattern_gbnf`` can write, and the other
    way round (both are the same whitelist): no request can pass the edge and then fail
    inside the expert."""
    rng = random.Random(27)
    for _ in range(500):
        pattern = _random_pattern(rng)
        try:
            pattern_gbnf(pattern)
            translated = True
        except UnsafeSchema:
            translated = False
        try:
            check_schema(_string_schema(pattern))
            checked = True
        except UnsafeSchema:
            checked = False
        assert translated == checked, pattern


def test_schema_bounds_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(UnsafeSchema, match=r"properties\.e\.enum"):
        check_schema({"type": "object", "properties": {"e": {"enum": list(range(600))}}})
    with pytest.raises(UnsafeSchema, match=r"items\.maxItems"):
        check_schema({"type": "array", "items": {"type": "array", "maxItems": 10**6}})
    with pytest.raises(UnsafeSchema, match=r"\$ref"):
        check_schema({"$ref": "https://example.com/schema.json"})
