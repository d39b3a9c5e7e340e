"""The coordinator: an LLM that calls the other experts as tools.

Each configured, loadable non-chat expert is offered as a function whose JSON schema is
the expert's input model; a second chat expert is offered as ``escalate``. One turn's
tool calls run concurrently, their results go back to the LLM, and the loop ends with an
answer, or after ``max_steps`` turns (then the LLM must answer without tools), or at the
deadline (504). Every step is recorded with its arguments, time and result size.

Local llama.cpp models decide between answering and calling under a grammar
(``chatml-function-calling``), so every call they make parses.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from corral.config import Task
from corral.errors import CorralError, ExpertError, InvalidRequest
from corral.experts.chat import ChatInput
from corral.runtime import ExpertHandle, ExpertState, Runtime

__all__ = ["Coordinator", "Step"]

_NOT_TOOLS = frozenset({Task.CHAT, Task.EMBED})  # vectors mean nothing to an LLM
_ESCALATE = "escalate"


class CoordinatorTimeout(ExpertError):
    status_code = 504
    code = "coordinator_timeout"


@dataclass
class Step:
    """One thing the coordinator did, for the request's trace."""

    kind: str  # "llm" or "tool"
    name: str
    seconds: float
    started: float = 0.0  # seconds after the request began
    arguments: dict[str, Any] | None = None
    result_chars: int = 0
    error: str | None = None


@dataclass
class CoordinatorResult:
    response: dict[str, Any]
    steps: list[Step] = field(default_factory=list)


class Coordinator:
    """Runs one chat request through an LLM that may call experts as tools."""

    def __init__(
        self,
        runtime: Runtime,
        llm: ExpertHandle,
        *,
        escalate_to: ExpertHandle | None = None,
        max_steps: int = 2,
        deadline_s: float = 120.0,
    ) -> None:
        self.runtime = runtime
        self.llm = llm
        self.escalate_to = escalate_to
        self.max_steps = max_steps
        self.deadline_s = deadline_s
        self.tools = self._tools()
        self._t0 = time.perf_counter()

    def _tools(self) -> dict[str, tuple[ExpertHandle, type[BaseModel], dict[str, Any]]]:
        tools = {}
        for handle in self.runtime.handles.values():
            if handle.task in _NOT_TOOLS or handle.state == ExpertState.UNAVAILABLE:
                continue
            if handle.expert is None:
                continue  # not loaded yet; offered once it is
            schema = handle.expert.tool_schema()
            schema["function"]["parameters"] = _bounded(schema["function"]["parameters"])
            tools[schema["function"]["name"]] = (handle, handle.expert.input_model, schema)
        if self.escalate_to is not None:
            description = f"Hand a hard question to the larger model {self.escalate_to.name!r}."
            tools[_ESCALATE] = (self.escalate_to, ChatInput, _chat_tool(_ESCALATE, description))
        for handle in self.runtime.handles.values():  # code models (the catalog's `code` role)
            if handle.resolved.role == "code" and handle.state != ExpertState.UNAVAILABLE:
                name = f"code_{handle.name}".replace("-", "_")
                description = f"Write or explain code with the code model {handle.name!r}."
                tools[name] = (handle, ChatInput, _chat_tool(name, description))
        return tools

    async def run(self, params: dict[str, Any]) -> CoordinatorResult:
        result = CoordinatorResult(response={})
        self._t0 = time.perf_counter()
        try:
            async with asyncio.timeout(self.deadline_s):
                result.response = await self._loop(params, result.steps)
        except TimeoutError:
            raise CoordinatorTimeout(
                f"coordinator passed its {self.deadline_s:g}s deadline after {len(result.steps)} "
                "steps"
            ) from None
        return result

    async def _loop(self, params: dict[str, Any], steps: list[Step]) -> dict[str, Any]:
        messages = list(params["messages"])
        offered = [schema for _, _, schema in self.tools.values()]
        for turn in range(self.max_steps + 1):
            last_turn = turn == self.max_steps or not offered
            request = {**params, "messages": messages}
            if not last_turn:
                request |= {
                    "tools": offered,
                    "tool_choice": params.get("tool_choice", "auto"),
                    "max_tokens": params.get("max_tokens") or _TOOL_TURN_TOKENS,
                }
            params = {k: v for k, v in params.items() if k != "tool_choice"}  # first turn only
            try:
                reply = await self._timed_llm(request, steps)
            except InvalidRequest:
                if last_turn or turn == 0:
                    raise
                # the tool history outgrew the context: answer from the conversation alone
                return await self._timed_llm(params, steps)
            message = reply["choices"][0]["message"]
            calls = message.get("tool_calls") or []
            if last_turn or not calls:
                return reply
            messages.append(
                {"role": "assistant", "content": message.get("content"), "tool_calls": calls}
            )
            outputs = await asyncio.gather(*(self._call(call, steps) for call in calls))
            messages += [
                {"role": "tool", "tool_call_id": call["id"], "content": output}
                for call, output in zip(calls, outputs, strict=True)
            ]
        raise AssertionError("unreachable: the last turn always returns")

    async def _timed_llm(self, request: dict[str, Any], steps: list[Step]) -> dict[str, Any]:
        started = time.perf_counter()
        reply = await self.runtime.chat(self.llm, request)
        content = reply["choices"][0]["message"].get("content") or ""
        steps.append(
            Step(
                "llm",
                self.llm.name,
                time.perf_counter() - started,
                started - self._t0,
                result_chars=len(content),
            )
        )
        return reply

    async def _call(self, call: dict[str, Any], steps: list[Step]) -> str:
        """Run one tool call; failures become a message to the LLM, not a failed request."""
        name = call["function"]["name"]
        started = time.perf_counter()
        step = Step("tool", name, 0.0, started - self._t0)
        try:
            arguments = json.loads(call["function"].get("arguments") or "{}")
            step.arguments = arguments
            output = await self._execute(name, arguments)
        except (json.JSONDecodeError, ValidationError, CorralError) as exc:
            step.error = exc.message if isinstance(exc, CorralError) else str(exc)
            output = json.dumps({"error": step.error})
        step.seconds = time.perf_counter() - started
        step.result_chars = len(output)
        output = output[:_MAX_RESULT_CHARS]
        steps.append(step)
        return output

    async def _execute(self, name: str, arguments: dict[str, Any]) -> str:
        if name not in self.tools:
            raise InvalidRequest(f"no tool named {name!r}; tools: {', '.join(self.tools)}")
        handle, input_model, _ = self.tools[name]
        request = input_model.model_validate(arguments)
        if isinstance(request, ChatInput):  # another LLM: escalate, or a code model
            reply = await self.runtime.chat(
                handle, {"messages": [{"role": "user", "content": request.prompt}]}
            )
            return str(reply["choices"][0]["message"].get("content") or "")
        return json.dumps(_plain(await self.runtime.submit(handle, request)))


def _chat_tool(name: str, description: str) -> dict[str, Any]:
    parameters = _bounded(ChatInput.model_json_schema())
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": parameters},
    }


_TOOL_TURN_TOKENS = 160
_MAX_RESULT_CHARS = 4000  # what one tool result may add to the LLM's context
_MAX_ITEMS = 4


def _bounded(schema: dict[str, Any]) -> dict[str, Any]:
    """Cap list sizes in a tool schema: under a llama.cpp grammar a small model then cannot
    run away repeating one list item until the context is full. Strings are left to
    ``max_tokens``: a ``maxLength`` grammar made SmolLM2's sampling about 30x slower
    (61 s vs 2 s for one 160-token tool call)."""
    bounded = dict(schema)
    if bounded.get("type") == "array":
        bounded.setdefault("maxItems", _MAX_ITEMS)
    for key in ("properties", "$defs"):
        if isinstance(bounded.get(key), dict):
            bounded[key] = {k: _bounded(v) for k, v in bounded[key].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(bounded.get(key), dict):
            bounded[key] = _bounded(bounded[key])
    if isinstance(bounded.get("anyOf"), list):
        bounded["anyOf"] = [_bounded(v) for v in bounded["anyOf"]]
    return bounded


def _plain(value: Any) -> Any:
    """Expert results (dataclasses, lists of them) as JSON-ready data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
