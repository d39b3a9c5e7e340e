"""Tool calls in the text a local model writes: each template family's format, parsed in one
place, and the JSON schema that forces a call when the caller demands one.

The formats are the ones llama.cpp's own server parses:

- ``hermes``: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks (Qwen 2.5/3,
  Hermes, SmolLM3). It is also the *generic* format corral describes in the system message for
  a template that has no tool syntax of its own.
- ``mistral``: ``[TOOL_CALLS] [{"name": ..., "arguments": {...}}, ...]``, or the v11 layout
  ``[TOOL_CALLS]name[ARGS]{...}``.
- ``llama3``: a bare ``{"name": ..., "parameters": {...}}`` object (Llama 3.1-3.3 custom tools),
  optionally after ``<|python_tag|>``; several are separated by ``;``.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

__all__ = ["ToolFormat", "detect_format", "forced_call", "forced_call_schema", "openai_calls"]

_DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class ToolFormat:
    """How one template family writes a call: the text that opens it (what a forced call's
    prompt ends with) and the key that holds the arguments."""

    name: str
    opening: str
    arguments_key: str = "arguments"

    def may_start(self, text: str) -> bool:
        """Whether ``text`` (what the model wrote so far) could still become a call: a
        stream holds it back until this is False."""
        head = text.lstrip()
        if self.name == "llama3":
            return not head or head.startswith(("{", "<|python_tag|>"[: len(head)]))
        return self.opening.startswith(head) or head.startswith(self.opening)

    def parse(self, text: str) -> tuple[str, list[dict[str, Any]]]:
        """(content, calls) from a whole reply; calls are ``{"name", "arguments"}`` dicts
        and content is the text outside them."""
        if self.name == "mistral":
            return _parse_mistral(text)
        if self.name == "llama3":
            return _parse_llama3(text)
        return _parse_tagged(text, self.opening, "</tool_call>")

    def write(self, calls: list[dict[str, Any]]) -> str:
        """Calls an assistant made, in this format (for templates that cannot render
        ``tool_calls`` themselves)."""
        objects = [
            {"name": c["function"]["name"], self.arguments_key: _arguments(c)} for c in calls
        ]
        if self.name == "mistral":
            return "[TOOL_CALLS] " + json.dumps(objects, ensure_ascii=False)
        if self.name == "llama3":
            return ";".join(json.dumps(o, ensure_ascii=False) for o in objects)
        return "\n".join(
            f"<tool_call>\n{json.dumps(o, ensure_ascii=False)}\n</tool_call>" for o in objects
        )

    def instructions(self, tools: list[dict[str, Any]]) -> str:
        """The system-message text that offers ``tools`` to a template with no tool syntax."""
        listed = "\n".join(
            json.dumps(_untitled(t.get("function", t)), ensure_ascii=False) for t in tools
        )
        return (
            "You may call functions to help answer. The functions are:\n"
            f"{listed}\n"
            "To call one, reply with only\n"
            '<tool_call>\n{"name": "<function name>", "arguments": {<arguments as JSON>}}\n'
            "</tool_call>\n"
            "Otherwise answer the user directly."
        )


HERMES = ToolFormat("hermes", "<tool_call>\n")
MISTRAL = ToolFormat("mistral", "[TOOL_CALLS] ")
LLAMA3 = ToolFormat("llama3", "", arguments_key="parameters")


def detect_format(template: str) -> ToolFormat:
    """The family a chat template's own tool syntax belongs to (hermes when it has none:
    that is the generic format corral then describes to the model)."""
    if "[TOOL_CALLS]" in template:
        return MISTRAL
    if "<|python_tag|>" in template or "ipython" in template:
        return LLAMA3
    return HERMES


def forced_call_schema(tools: list[dict[str, Any]], fmt: ToolFormat) -> dict[str, Any]:
    """A JSON schema whose every instance is a call to one of ``tools``: the grammar that
    makes a demanded call (``tool_choice`` required or named) always parse."""
    options = [
        {
            "type": "object",
            "properties": {
                "name": {"const": t["function"]["name"]},
                fmt.arguments_key: t["function"].get("parameters") or {"type": "object"},
            },
            "required": ["name", fmt.arguments_key],
        }
        for t in tools
    ]
    return options[0] if len(options) == 1 else {"oneOf": options}


def forced_call(text: str) -> list[dict[str, Any]]:
    """The call a grammar-forced generation wrote: one JSON object whatever the format
    (the format's opening is in the prompt, so its own framing never reaches the text)."""
    decoded = _decode_at(text, 0)
    call = _as_call(decoded[0]) if decoded else None
    return [call] if call is not None else []


def openai_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Parsed calls in OpenAI's ``tool_calls`` shape (arguments as a JSON string)."""
    return [
        {
            "id": f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {
                "name": str(c["name"]),
                "arguments": json.dumps(c["arguments"], ensure_ascii=False),
            },
        }
        for c in calls
    ]


def _untitled(schema: Any) -> Any:
    """A schema without its ``title`` keys (pydantic writes one per field): they repeat the
    property names and cost a small model's context."""
    if isinstance(schema, dict):
        return {
            k: {name: _untitled(v) for name, v in value.items()}
            if k in ("properties", "$defs") and isinstance(value, dict)
            else _untitled(value)
            for k, value in schema.items()
            if k != "title"
        }
    if isinstance(schema, list):
        return [_untitled(v) for v in schema]
    return schema


def _arguments(call: dict[str, Any]) -> Any:
    raw = call["function"].get("arguments")
    if isinstance(raw, str):
        try:
            return json.loads(raw or "{}")
        except json.JSONDecodeError:
            return raw
    return raw if raw is not None else {}


def _as_call(value: Any) -> dict[str, Any] | None:
    """``{"name", "arguments"}`` from a decoded object, whichever key held the arguments."""
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    if not isinstance(arguments, dict):
        return None
    return {"name": value["name"], "arguments": arguments}


def _decode_at(text: str, start: int) -> tuple[Any, int] | None:
    """The JSON value that begins at ``start`` (after whitespace) and where it ends."""
    start += len(text[start:]) - len(text[start:].lstrip())
    try:
        return _DECODER.raw_decode(text, start)
    except json.JSONDecodeError:
        return None


def _parse_tagged(text: str, opening: str, closing: str) -> tuple[str, list[dict[str, Any]]]:
    tag = opening.strip()
    calls: list[dict[str, Any]] = []
    content: list[str] = []
    position = 0
    while (found := text.find(tag, position)) != -1:
        content.append(text[position:found])
        decoded = _decode_at(text, found + len(tag))
        call = _as_call(decoded[0]) if decoded else None
        if decoded is None or call is None:
            return text.strip(), []  # a broken call: the caller decides (retry forced)
        calls.append(call)
        position = decoded[1]
        position += len(text[position:]) - len(text[position:].lstrip())
        if text.startswith(closing, position):
            position += len(closing)
    content.append(text[position:])
    return "".join(content).strip(), calls


def _parse_mistral(text: str) -> tuple[str, list[dict[str, Any]]]:
    found = text.find("[TOOL_CALLS]")
    if found == -1:
        return text.strip(), []
    rest = found + len("[TOOL_CALLS]")
    decoded = _decode_at(text, rest)
    if decoded is not None and isinstance(decoded[0], list):
        calls = [c for c in map(_as_call, decoded[0]) if c is not None]
        return (text[:found] + text[decoded[1] :]).strip(), calls
    match = re.match(r"\s*([\w.-]+)\[ARGS\]", text[rest:])  # v11: name[ARGS]{...}
    if match:
        decoded = _decode_at(text, rest + match.end())
        if decoded is not None and isinstance(decoded[0], dict):
            call = {"name": match.group(1), "arguments": decoded[0]}
            return (text[:found] + text[decoded[1] :]).strip(), [call]
    return text.strip(), []


def _parse_llama3(text: str) -> tuple[str, list[dict[str, Any]]]:
    head = text.lstrip().removeprefix("<|python_tag|>")
    calls: list[dict[str, Any]] = []
    position = 0
    while True:
        decoded = _decode_at(head, position)
        call = _as_call(decoded[0]) if decoded else None
        if decoded is None or call is None:
            break
        calls.append(call)
        position = decoded[1]
        following = head[position:].lstrip()
        if not following.startswith(";"):
            break
        position = len(head) - len(following) + 1
    if not calls:
        return text.strip(), []
    return head[position:].strip(), calls
