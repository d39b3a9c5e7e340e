"""One typed call into an expert: what it takes, the limits its input is held to, what it
returns, and how that result is written as JSON.

Every way into an expert goes through an ``Operation``: an HTTP route builds its input
and the dispatcher checks it (``Dispatcher.submit``), the coordinator's tool calls and a
semantic route's extraction ``parse`` theirs from JSON, and whatever reads a result as
JSON (a tool result the LLM reads, a step in the trace) writes it with ``dump``, one
pydantic ``TypeAdapter`` of the declared result type. So a tool call over a limit is the
endpoint's 413, and a pydantic result (a document) is written like a dataclass one.

Each family declares its operations beside its input and result types; an expert class
names the one the coordinator offers (``BaseExpert.operation``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter

from corral.config import LimitsConfig, Task

__all__ = ["Operation", "check_request", "operation_for"]

InputT = TypeVar("InputT", bound=BaseModel)

_BY_INPUT: dict[type[BaseModel], Operation[Any]] = {}


@dataclass(frozen=True, eq=False)
class Operation(Generic[InputT]):
    """``task``'s call taking ``input_model`` and returning ``result_type``."""

    task: Task
    input_model: type[InputT]
    result_type: Any  # a type annotation: list[Classification], DocumentResult, ...
    name: str = field(default="")  # "fit" beside a task's main call; "" for the main one

    def __post_init__(self) -> None:
        _BY_INPUT[self.input_model] = self

    def parse(self, arguments: Any, limits: LimitsConfig) -> InputT:
        """JSON arguments (a tool call's, an extraction's) as a checked input: 422 on a
        wrong shape, 413 naming the limit as the task's endpoint would."""
        request = self.input_model.model_validate(arguments)
        self.check(request, limits)
        return request

    def check(self, request: InputT, limits: LimitsConfig) -> None:
        """``server.limits`` on the input: the input model's own ``check_limits`` (inputs
        whose expert bounds them when it decodes them, images and graphs, have none)."""
        check = getattr(request, "check_limits", None)
        if callable(check):
            check(limits)

    def dump(self, result: Any) -> Any:
        """The result as JSON-ready data (arrays as lists)."""
        return self._adapter.dump_python(result, mode="json", fallback=_array_or_text)

    def for_llm(self, result: Any) -> Any:
        """What an LLM calling the expert as a tool reads: the result's ``readable()``
        view where it has one (a document without its word boxes), else all of it."""
        readable = getattr(result, "readable", None)
        return readable() if callable(readable) else self.dump(result)

    @cached_property
    def _adapter(self) -> TypeAdapter[Any]:
        return TypeAdapter(self.result_type, config=ConfigDict(arbitrary_types_allowed=True))

    def __repr__(self) -> str:
        call = f"{self.task.value}.{self.name}" if self.name else self.task.value
        return f"Operation({call}: {self.input_model.__name__})"


def operation_for(request: BaseModel) -> Operation[Any] | None:
    """The operation ``request`` is the input of (its own class or the nearest base that
    one declares); None for a type no operation takes."""
    for cls in type(request).__mro__:
        operation = _BY_INPUT.get(cls)
        if operation is not None:
            return operation
    return None


def check_request(request: Any, limits: LimitsConfig) -> None:
    """``server.limits`` on any expert input, through its operation."""
    operation = operation_for(request) if isinstance(request, BaseModel) else None
    if operation is not None:
        operation.check(request, limits)


def _array_or_text(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else str(value)
