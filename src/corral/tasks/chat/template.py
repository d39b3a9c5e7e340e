"""Prompts in the model's own chat template, with every OpenAI message kind kept.

llama-cpp-python's ``chatml-function-calling`` handler (what corral used to force on every
GGUF) HTML-escapes text and knows only system/user/assistant: tool results, developer
messages and content parts never reached the model. Here the prompt is rendered with the
Jinja template the GGUF carries (as llama.cpp's server does with ``--jinja``), or
``options.chat_template``, or ChatML for a model with none.

What a template can express is probed once, by rendering a sentinel in each position
(developer and tool roles count only where the template names them):
a role it renders is passed as is; a developer message becomes a system message, a system
message the template refuses joins the next user message, a tool result the template has
no role for becomes a user message that names the call, and calls or tool definitions the
template cannot write are written in its tool format (``tool_calls.py``). Nothing is
dropped: a conversation the template still refuses is a 422 that says so.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

from corral.errors import InvalidRequest
from corral.tasks.chat.tool_calls import ToolFormat, detect_format

__all__ = ["CHATML", "ChatTemplate"]

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}"
)
_SENTINEL = "corral-sentinel-7f3a"
_SENTINEL_TOOL = "corral_sentinel_tool"
_TEXT_PARTS = frozenset({"text", "input_text", "output_text", "refusal"})


@dataclass(frozen=True)
class Abilities:
    """What a template renders: these roles' content, assistant tool calls, a tools list."""

    roles: frozenset[str]
    tool_calls: bool
    tools: bool


class ChatTemplate:
    """One model's chat template: OpenAI messages (and tools) in, the prompt text out."""

    def __init__(
        self, source: str, *, bos: str = "", eos: str = "", origin: str = "", formatter: Any = None
    ) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.source = source
        self.origin = origin  # where it came from: "gguf", "options.chat_template", "chatml"
        self.eos = eos
        self._formatter: Any = formatter or Jinja2ChatFormatter(
            template=source, eos_token=eos, bos_token=bos
        )
        self.tool_format: ToolFormat = detect_format(source)
        self.abilities = self._probe()

    @classmethod
    def named(cls, name: str, *, eos: str = "") -> ChatTemplate:
        """One of llama-cpp-python's named formats (``options.chat_format``), for a GGUF that
        carries no template of its own."""
        from llama_cpp import llama_chat_format

        for attribute in (name.replace("-", ""), name.replace("-", "_")):
            formatter = getattr(llama_chat_format, f"format_{attribute}", None)
            if formatter is not None:
                return cls("", eos=eos, origin=f"chat_format {name}", formatter=formatter)
        raise InvalidRequest(
            f"options.chat_format {name!r} is not a llama-cpp-python chat format", param="options"
        )

    def render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
        """The prompt, ending where the assistant's reply begins."""
        prepared = self.prepare(messages, tools)
        try:
            return self._render(prepared, tools if tools and self.abilities.tools else None)
        except Exception as exc:  # raise_exception() in the template, or a type error in it
            raise InvalidRequest(
                f"the model's chat template ({self.origin}) cannot express these messages: "
                f"{exc}",
                param="messages",
            ) from exc

    def prepare(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
    ) -> list[dict[str, Any]]:
        """Messages in the forms this template renders (see the module docstring)."""
        names = _call_names(messages)
        prepared = [self._message(i, m, names) for i, m in enumerate(messages)]
        if tools and not self.abilities.tools:
            offer = self.tool_format.instructions(tools)
            if prepared and prepared[0]["role"] == "system":
                prepared[0] = {**prepared[0], "content": prepared[0]["content"] + "\n\n" + offer}
            else:
                prepared.insert(0, {"role": "system", "content": offer})
        if "system" not in self.abilities.roles:
            prepared = _systems_into_users(prepared)
        return prepared

    def _message(
        self, index: int, message: dict[str, Any], names: dict[str, str]
    ) -> dict[str, Any]:
        role = message["role"]
        content = _text(message.get("content"), index)
        if role == "developer" and role not in self.abilities.roles:
            role = "system"
        if role in ("tool", "function"):
            name = message.get("name") or names.get(message.get("tool_call_id") or "", "a tool")
            if "tool" not in self.abilities.roles:
                return {"role": "user", "content": f"Result of the call to {name}:\n{content}"}
            return {
                "role": "tool",
                "content": content,
                "name": name,
                "tool_call_id": message.get("tool_call_id") or "",
            }
        if role == "assistant" and message.get("tool_calls"):
            calls = message["tool_calls"]
            if not self.abilities.tool_calls:
                written = self.tool_format.write(calls)
                return {"role": role, "content": f"{content}\n{written}".strip()}
            return {"role": role, "content": content, "tool_calls": _template_calls(calls)}
        return {"role": role, "content": content}

    def _render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
        return str(self._formatter(messages=messages, tools=tools).prompt)

    def _probe(self) -> Abilities:
        """Which positions of a conversation this template renders, found by rendering a
        sentinel in each (templates tell nothing else about themselves)."""
        user = {"role": "user", "content": "hi"}
        call = {
            "id": "call_1",
            "type": "function",
            "function": {"name": _SENTINEL_TOOL, "arguments": {"x": 1}},
        }
        assistant_call = {"role": "assistant", "content": "", "tool_calls": [call]}
        trials: dict[str, list[dict[str, Any]]] = {
            "system": [{"role": "system", "content": _SENTINEL}, user],
            "developer": [{"role": "developer", "content": _SENTINEL}, user],
            "user": [{"role": "user", "content": _SENTINEL}],
            "assistant": [user, {"role": "assistant", "content": _SENTINEL}],
            "tool": [
                user,
                assistant_call,
                {"role": "tool", "content": _SENTINEL, "tool_call_id": "call_1",
                 "name": _SENTINEL_TOOL},
            ],
        }
        # a generic template (ChatML's ``message['role']``) writes any role it is given, but a
        # model was trained on the roles its template names: developer and tool count only then
        roles = frozenset(
            r
            for r, trial in trials.items()
            if (r in ("system", "user", "assistant") or repr(r) in self.source
                or f'"{r}"' in self.source)
            and self._shows(trial, None, _SENTINEL)
        )
        tool = {"type": "function", "function": {"name": _SENTINEL_TOOL, "parameters": {}}}
        return Abilities(
            roles=roles,
            tool_calls=self._shows([user, assistant_call], None, _SENTINEL_TOOL),
            tools=self._shows([user], [tool], _SENTINEL_TOOL),
        )

    def _shows(self, messages: list[dict[str, Any]], tools: Any, needle: str) -> bool:
        try:
            return needle in self._render(messages, tools)
        except Exception:  # a template that refuses the position cannot express it
            return False


def _text(content: Any, index: int) -> str:
    """A message's content as text: content parts joined; a part a text-only model cannot
    read is a 422 naming it."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in _TEXT_PARTS:
            raise InvalidRequest(
                f"messages[{index}].content[{j}] is a {kind!r} part, and this chat expert "
                "reads text only: send text parts, or route images and files to /v1/detect or "
                "/v1/documents/extract",
                param=f"messages[{index}].content[{j}]",
            )
        texts.append(str(part.get("text", part.get("refusal", ""))))
    return "\n".join(texts)


def _call_names(messages: list[dict[str, Any]]) -> dict[str, str]:
    """Each earlier tool call's id -> its function name, for the results that answer it."""
    return {
        call.get("id", ""): call.get("function", {}).get("name", "")
        for m in messages
        for call in m.get("tool_calls") or []
    }


def _template_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool calls as Hugging Face templates read them: arguments as a mapping (they write
    ``arguments | tojson``), not OpenAI's JSON string."""
    shaped = []
    for call in calls:
        function = dict(call.get("function") or {})
        if isinstance(function.get("arguments"), str):
            with contextlib.suppress(json.JSONDecodeError):  # else the template shows it
                function["arguments"] = json.loads(function["arguments"] or "{}")
        shaped.append({**call, "function": function})
    return shaped


def _systems_into_users(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For a template without a system role: each system text opens the next user message."""
    merged: list[dict[str, Any]] = []
    pending: list[str] = []
    for message in messages:
        if message["role"] == "system":
            pending.append(message["content"])
            continue
        if pending and message["role"] == "user":
            message = {**message, "content": "\n\n".join([*pending, message["content"]])}
            pending = []
        merged.append(message)
    if pending:
        merged.append({"role": "user", "content": "\n\n".join(pending)})
    return merged
