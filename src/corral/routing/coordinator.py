"""The coordinator: an LLM that calls the other experts as tools.

Each configured, loadable non-chat expert is offered as a function whose JSON schema is
the expert's input model; a second chat expert is offered as ``escalate``. One turn's
tool calls run concurrently, their results go back to the LLM, and the loop ends with an
answer, or after ``max_steps`` turns (then the LLM must answer without tools), or at the
deadline (504). Every step is recorded with its arguments, time and result size.

The conversation goes to every backend as standard tool messages (the assistant's
``tool_calls``, then one ``tool`` message per result), which local llama.cpp models see
through their own chat template (``experts/chat_template.py``).

When a semantic route has already chosen the expert, ``answer_with`` makes that one call
itself and the LLM only words the answer: small models fill tool arguments poorly
(SmolLM2-135M repeats the text four times and forgets the labels) but reliably
restate a result handed to them in a system message.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from corral.errors import (
    CoordinatorTimeout,
    CorralError,
    ExpertUnavailable,
    InvalidRequest,
)
from corral.experts.base import BaseExpert, tool_schema_of
from corral.experts.operation import Operation
from corral.experts.registry import expert_class
from corral.json_values import first_bad_value
from corral.observe.otel import current_span
from corral.observe.trace import Step, current_trace
from corral.runtime import ExpertHandle, ExpertState
from corral.tasks import TOOL_TASKS
from corral.tasks.chat.expert import CHAT, ChatInput, chat_completion
from corral.tasks.text.classify import Classification
from corral.tasks.text.ner import Entities

if TYPE_CHECKING:
    from corral.routing.dispatch import Dispatcher

__all__ = ["Coordinator"]

_ESCALATE = "escalate"


class Coordinator:
    """Runs one chat request through an LLM that may call experts as tools."""

    def __init__(
        self,
        dispatch: Dispatcher,
        llm: ExpertHandle,
        *,
        escalate_to: ExpertHandle | None = None,
        max_steps: int = 2,
        deadline_s: float = 120.0,
    ) -> None:
        self.dispatch = dispatch
        self.runtime = dispatch.runtime
        self.llm = llm
        self.escalate_to = escalate_to
        self.max_steps = max_steps
        self.deadline_s = deadline_s
        self.tools = self._tools()
        self.trace = current_trace()

    def _tools(self) -> dict[str, tuple[ExpertHandle, Operation[Any], dict[str, Any]]]:
        tools = {}
        for handle in self.runtime.handles.values():
            if handle.task not in TOOL_TASKS or handle.state == ExpertState.UNAVAILABLE:
                continue
            cls = _expert_class(handle)  # from the config: loaded or not (a call loads it)
            if cls is None:
                continue
            schema = tool_schema_of(cls, handle.name)
            schema["function"]["parameters"] = _bounded(schema["function"]["parameters"])
            tools[schema["function"]["name"]] = (handle, cls.operation, schema)
        if self.escalate_to is not None:
            description = f"Hand a hard question to the larger model {self.escalate_to.name!r}."
            tools[_ESCALATE] = (self.escalate_to, CHAT, _chat_tool(_ESCALATE, description))
        for handle in self.runtime.handles.values():  # code models (the catalog's `code` role)
            if handle.resolved.role == "code" and handle.state != ExpertState.UNAVAILABLE:
                name = f"code_{handle.name}".replace("-", "_")
                description = f"Write or explain code with the code model {handle.name!r}."
                tools[name] = (handle, CHAT, _chat_tool(name, description))
        return tools

    async def run(self, params: dict[str, Any]) -> dict[str, Any]:
        """The final chat completion; the steps taken go into the request's trace."""
        steps_before = len(self.trace.steps)
        span = current_span(self.dispatch.tracer, "coordinator", {"corral.llm": self.llm.name})
        try:
            with span:
                async with asyncio.timeout(self.deadline_s):
                    return await self._loop(params, self.trace.steps)
        except TimeoutError:
            raise CoordinatorTimeout(
                f"coordinator passed its {self.deadline_s:g}s deadline after "
                f"{len(self.trace.steps) - steps_before} steps"
            ) from None

    async def answer_with(
        self,
        expert: ExpertHandle,
        arguments: dict[str, Any],
        params: dict[str, Any],
        *,
        worded_by_llm: bool,
    ) -> dict[str, Any]:
        """Call ``expert`` as the router planned; the LLM words the answer, or the result
        is the answer as JSON (``worded_by_llm=False``: no LLM at all)."""
        await self.runtime.ensure_loaded(expert)  # tools are offered once loaded
        self.tools = self._tools()
        name = next(n for n, (h, _, _) in self.tools.items() if h is expert)
        call = {"id": "call_route", "function": {"name": name, "arguments": json.dumps(arguments)}}
        output, result = await self._call(call, self.trace.steps)
        if result is None or not worded_by_llm:  # a failure is said as a tool error would be
            return chat_completion(output, model=expert.name)
        summary = _summary(result, self.tools[name][1])
        note = f"The {expert.task} expert {expert.name!r} read the user's text: {summary}."
        messages = [
            {"role": "system", "content": note + " Answer the user in one sentence using it."},
            *params["messages"],
        ]
        async with asyncio.timeout(self.deadline_s):
            return await self._timed_llm({**params, "messages": messages}, self.trace.steps)

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
                if last_turn:
                    raise
                # the tools or their history outgrew the LLM's context (a small local model
                # offered every expert): answer from the conversation alone
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
                for call, (output, _) in zip(calls, outputs, strict=True)
            ]
        raise AssertionError("unreachable: the last turn always returns")

    async def _timed_llm(self, request: dict[str, Any], steps: list[Step]) -> dict[str, Any]:
        started_at, started = self.trace.elapsed(), time.perf_counter()
        answered, reply = await self.dispatch.chat(self.llm, request)
        content = reply["choices"][0]["message"].get("content") or ""
        seconds = time.perf_counter() - started
        steps.append(Step("llm", answered.name, seconds, started_at, result_chars=len(content)))
        return reply

    async def _call(self, call: dict[str, Any], steps: list[Step]) -> tuple[str, Any]:
        """Run one tool call -> (text for the LLM, result or None on failure). Failures
        become a message to the LLM, not a failed request."""
        name = call["function"]["name"]
        started = time.perf_counter()
        step = Step("tool", name, 0.0, self.trace.elapsed())
        result: Any = None
        try:
            arguments = json.loads(call["function"].get("arguments") or "{}")
            step.arguments = arguments
            operation, result = await self._execute(name, arguments)
            plain = operation.for_llm(result)
            output = result if isinstance(result, str) else json.dumps(plain)
            step.result = plain if len(output) <= _MAX_RESULT_CHARS else output[:_MAX_RESULT_CHARS]
        except (json.JSONDecodeError, ValidationError, CorralError) as exc:
            step.error = exc.message if isinstance(exc, CorralError) else str(exc)
            step.status = exc.status_code if isinstance(exc, CorralError) else 422
            output = json.dumps({"error": step.error})
        step.seconds = time.perf_counter() - started
        step.result_chars = len(output)
        steps.append(step)
        return output[:_MAX_RESULT_CHARS], result

    async def _execute(self, name: str, arguments: dict[str, Any]) -> tuple[Operation[Any], Any]:
        """The tool's operation and its result; the arguments are held to the limits the
        task's endpoint enforces (a 413 told to the LLM)."""
        if name not in self.tools:
            raise InvalidRequest(f"no tool named {name!r}; tools: {', '.join(self.tools)}")
        handle, operation, _ = self.tools[name]
        bad = first_bad_value(arguments, "arguments")
        if bad is not None:  # the LLM wrote it: a message back to it, not an expert failure
            raise InvalidRequest(bad[1], param=bad[0])
        request = operation.parse(arguments, self.runtime.config.server.limits)
        if isinstance(request, ChatInput):  # another LLM: escalate, or a code model
            _, reply = await self.dispatch.chat(
                handle, {"messages": [{"role": "user", "content": request.prompt}]}
            )
            return operation, str(reply["choices"][0]["message"].get("content") or "")
        _, result = await self.dispatch.submit(handle, request)
        return operation, result


def _expert_class(handle: ExpertHandle) -> type[BaseExpert] | None:
    if handle.expert is not None:
        return type(handle.expert)
    task, backend = handle.resolved.task, handle.resolved.backend
    if task is None or backend is None:
        return None
    try:
        return expert_class(task, backend)
    except ExpertUnavailable:
        return None


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


def _summary(result: Any, operation: Operation[Any]) -> str:
    """An expert's result in words a small LLM restates reliably (JSON it garbles)."""
    if isinstance(result, list) and result and isinstance(result[0], Classification):
        top = result[0]
        others = ", ".join(
            f"{lb} {sc:.2f}" for lb, sc in zip(top.labels[1:], top.scores[1:], strict=True)
        )
        return f"label {top.labels[0]!r} (score {top.scores[0]:.2f}; others: {others})"
    if isinstance(result, list) and result and isinstance(result[0], Entities):
        found = [f"{e.text} ({e.type})" for r in result for e in r.entities]
        return "entities " + (", ".join(found) if found else "none found")
    return json.dumps(operation.for_llm(result))[:_MAX_RESULT_CHARS]
