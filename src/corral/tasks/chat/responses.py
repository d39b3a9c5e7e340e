"""The Responses API on top of chat: input items -> chat messages, a chat reply ->
output items and the response object, and the bounded store ``previous_response_id``
reads. Ids are random (128 bits), so a response is only continued by whoever got it."""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from typing import Any

from corral.errors import InvalidRequest, NotFound
from corral.tasks.chat.schemas_responses import ResponsesRequest

__all__ = ["ResponseStore", "chat_params", "output_items", "response_object"]

KEPT_RESPONSES = 1000  # conversations kept for previous_response_id, least recent dropped


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


class ResponseStore:
    """Finished responses and the conversation that led to each, in memory, bounded."""

    def __init__(self, size: int = KEPT_RESPONSES) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = OrderedDict()

    def put(self, response: dict[str, Any], conversation: list[dict[str, Any]]) -> None:
        with self._lock:
            self._items[response["id"]] = (response, conversation)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def get(self, response_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        with self._lock:
            found = self._items.get(response_id)
            if found is not None:
                self._items.move_to_end(response_id)
        if found is None:
            raise NotFound(
                f"no response {response_id!r}: it was never made here, or it is older than "
                f"the last {self._size} kept in memory (a restart forgets them all)",
                param="previous_response_id",
            )
        return found

    def delete(self, response_id: str) -> None:
        self.get(response_id)
        with self._lock:
            self._items.pop(response_id, None)


def conversation(body: ResponsesRequest, store: ResponseStore) -> list[dict[str, Any]]:
    """The chat messages this turn continues: the previous response's, then the input
    (``instructions`` are not kept: they apply to the turn that sends them)."""
    earlier = store.get(body.previous_response_id)[1] if body.previous_response_id else []
    if isinstance(body.input, str):
        return [*earlier, {"role": "user", "content": body.input}]
    return [*earlier, *_messages(body.input)]


def _messages(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise InvalidRequest(
                    f"input[{i}]: role {role!r} is not a message role", param="input"
                )
            messages.append({"role": role, "content": _text(item.get("content"), i)})
        elif kind == "function_call":
            _require_strings(item, i, "call_id", "name", "arguments")
            call = {
                "id": item.get("call_id") or item.get("id"),
                "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments", "")},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)  # one assistant turn, several calls
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif kind == "function_call_output":
            _require_strings(item, i, "call_id")
            output = item.get("output")
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": item.get("call_id"),
                    "content": output if isinstance(output, str) else _text(output, i),
                }
            )
        elif kind != "reasoning":  # no reasoning here: skipping it loses nothing
            raise InvalidRequest(
                f"input[{i}]: item type {kind!r} is not served (message, function_call, "
                "function_call_output)",
                param="input",
            )
    return messages


def _require_strings(item: dict[str, Any], index: int, *keys: str) -> None:
    missing = [k for k in keys if not isinstance(item.get(k), str)]
    if missing:
        raise InvalidRequest(
            f"input[{index}] ({item.get('type')}) needs {', '.join(missing)} as strings",
            param="input",
        )


def _text(content: Any, index: int) -> str:
    """A message's content as text (input_text / output_text parts joined)."""
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else []
    texts = []
    for part in parts:
        if not isinstance(part, dict) or part.get("type") not in ("input_text", "output_text"):
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise InvalidRequest(
                f"input[{index}]: content part {kind!r} is not served (text parts only)",
                param="input",
            )
        texts.append(str(part.get("text", "")))
    return "".join(texts)


def chat_params(body: ResponsesRequest, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The chat request that answers this turn."""
    system = [{"role": "system", "content": body.instructions}] if body.instructions else []
    params: dict[str, Any] = {"messages": system + messages}
    for ours, theirs in (
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("max_output_tokens", "max_tokens"),
        ("parallel_tool_calls", "parallel_tool_calls"),
    ):
        if getattr(body, ours) is not None:
            params[theirs] = getattr(body, ours)
    if body.tools:
        params["tools"] = [
            {"type": "function", "function": t.model_dump(exclude={"type"}, exclude_none=True)}
            for t in body.function_tools
        ]
    if isinstance(body.tool_choice, str):
        params["tool_choice"] = body.tool_choice
    elif body.tool_choice is not None:
        params["tool_choice"] = {"type": "function", "function": {"name": body.tool_choice.name}}
    text_format = body.text.format if body.text else None
    if text_format is not None and text_format.type == "json_schema":
        schema = {"name": text_format.name or "response", "schema": text_format.schema_ or {}}
        params["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif text_format is not None and text_format.type == "json_object":
        params["response_format"] = {"type": "json_object"}
    return params


def output_items(message: dict[str, Any], one_call: bool) -> list[dict[str, Any]]:
    """A chat reply's message as Responses output: a message item, then function calls."""
    items: list[dict[str, Any]] = []
    text = message.get("content") or ""
    calls = message.get("tool_calls") or []
    if text or not calls:
        items.append(message_item(new_id("msg"), text))
    for call in calls[:1] if one_call else calls:
        items.append(call_item(new_id("fc"), call))
    return items


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": [part] if status == "completed" else [],
    }


def call_item(item_id: str, call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call.get("id") or new_id("call"),
        "name": function.get("name", ""),
        "arguments": function.get("arguments") or "",
        "status": "completed",
    }


def as_chat_message(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The output as the assistant message the next turn's conversation holds."""
    text = "".join(
        p["text"] for i in items if i["type"] == "message" for p in i["content"] if "text" in p
    )
    calls = [
        {
            "id": i["call_id"],
            "type": "function",
            "function": {"name": i["name"], "arguments": i["arguments"]},
        }
        for i in items
        if i["type"] == "function_call"
    ]
    return {"role": "assistant", "content": text, **({"tool_calls": calls} if calls else {})}


def response_object(
    body: ResponsesRequest,
    response_id: str,
    model: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    status: str = "completed",
) -> dict[str, Any]:
    """The ``response`` object, as OpenAI's SDK reads it."""
    read = int((usage or {}).get("prompt_tokens") or 0)
    written = int((usage or {}).get("completion_tokens") or 0)
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": model,
        "output": output,
        "instructions": body.instructions,
        "previous_response_id": body.previous_response_id,
        "metadata": body.metadata or {},
        "parallel_tool_calls": body.parallel_tool_calls is not False,
        "tool_choice": (
            body.tool_choice.model_dump()
            if body.tool_choice is not None and not isinstance(body.tool_choice, str)
            else body.tool_choice or "auto"
        ),
        "tools": [t.model_dump(exclude_none=True) for t in body.function_tools],
        "temperature": body.temperature,
        "top_p": body.top_p,
        "max_output_tokens": body.max_output_tokens,
        "text": {"format": {"type": "text"}},
        "truncation": "disabled",
        "user": body.user,
        "error": None,
        "incomplete_details": None,
        "usage": {
            "input_tokens": read,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": written,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": read + written,
        }
        if status == "completed"
        else None,
    }
