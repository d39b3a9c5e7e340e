"""The one interface every expert implements.

A request flows through three steps so the runtime can batch across callers:

* ``prepare(request) -> items``   cheap, on the event loop: expand a request into items
* ``forward(items) -> outputs``   one batched model call, in a worker thread
* ``finish(request, outputs)``    cheap: turn this request's outputs into its result

The micro-batcher concatenates the items of many requests, runs ``forward`` once, and
hands each request back exactly its own slice of outputs.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel

from corral.artifacts import ArtifactStore
from corral.config import LimitsConfig, ModelConfig, Task
from corral.errors import ExpertUnavailable
from corral.experts.operation import Operation
from corral.experts.options import Options
from corral.uploads.files import FileStore

__all__ = ["BaseExpert", "Expert", "LoadContext", "SharedModels", "require", "tool_schema_of"]

RequestT = TypeVar("RequestT", bound=BaseModel)
ItemT = TypeVar("ItemT")
OutputT = TypeVar("OutputT")
ResultT = TypeVar("ResultT")


class SharedModels:
    """Reference-counted store so experts on the same weights share one copy in memory.

    The default config serves embed, rerank and classify from one MiniLM; loading it
    three times would triple its memory for nothing.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[tuple[str, ...], list[Any]] = {}

    def acquire(self, key: tuple[str, ...], factory: Callable[[], Any]) -> Any:
        with self._lock:
            entry = self._models.get(key)
            if entry is None:
                entry = self._models[key] = [factory(), 0]
            entry[1] += 1
            return entry[0]

    def release(self, key: tuple[str, ...]) -> None:
        with self._lock:
            entry = self._models.get(key)
            if entry is not None:
                entry[1] -= 1
                if entry[1] <= 0:
                    del self._models[key]


@dataclass
class LoadContext:
    """What an expert needs to load: where its weights are and where to run."""

    path: Path  # for upstream experts: unused (their ``base_url`` says where they are)
    device: str
    spec: ModelConfig
    shared: SharedModels = field(default_factory=SharedModels)
    base_url: str | None = None
    executor: Executor | None = None  # the thread this expert's blocking calls run on
    artifacts: ArtifactStore | None = None  # fitted state kept across restarts (anomaly, graph)
    files: FileStore | None = None  # uploads that tool calls name by id (detect, documents)
    limits: LimitsConfig = field(default_factory=LimitsConfig)  # for inputs read from `files`

    @property
    def options(self) -> dict[str, Any]:
        return self.spec.options


class BaseExpert(ABC):
    """What every expert has: a task, a backend, and weights to load and unload."""

    task: ClassVar[Task]
    backend: ClassVar[str]
    # the call the coordinator offers as this expert's tool (what it takes and returns);
    # fitted experts also take their family's fit operation
    operation: ClassVar[Operation[Any]]
    # what ``options:`` this backend takes (corral.experts.options), checked at config load
    options_model: ClassVar[type[Options] | None] = None
    # every expert has a worker thread of its own (see Runtime._executor_for); on torch
    # experts ``threads:`` sets torch's intra-op threads there. Engines with their own
    # pools (llama.cpp, spaCy, ONNX Runtime) or none (HTTP upstreams) say False.
    uses_torch: ClassVar[bool] = True
    # the engine and precision actually serving once loaded ("onnxruntime-int8"), when an
    # expert can choose among several; None: just ``backend``
    runtime_in_use: str | None = None
    # run in a supervised worker process unless the config's ``isolate:`` says otherwise
    # (corral.runtime.isolated): native backends whose crash would end the server's process
    isolate_by_default: ClassVar[bool] = False

    def __init__(self, context: LoadContext) -> None:
        self.context = context

    @abstractmethod
    def load(self) -> None:
        """Load weights; runs in a worker thread. Raise ExpertUnavailable on failure."""

    @abstractmethod
    def unload(self) -> None:
        """Drop references to the weights so their memory can be freed."""

    def resident_bytes(self) -> int | None:
        """Bytes the loaded model holds as its framework reports them (weights, caches);
        None when it cannot say, and the runtime falls back to the RSS growth it saw."""
        return None

    async def aclose(self) -> None:
        """Release everything on shutdown, on the expert's own thread: after any call still
        running there (freeing a llama.cpp context mid-generation crashes the process)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.context.executor, self.unload)

    def tool_schema(self) -> dict[str, Any]:
        """A function-calling tool description, so an LLM coordinator can call this expert."""
        return tool_schema_of(type(self), self.context.spec.name)


class Expert(BaseExpert, Generic[RequestT, ItemT, OutputT, ResultT]):
    """A batched expert: ``prepare`` / ``forward`` / ``finish`` (see the module docstring)."""

    def __init__(self, context: LoadContext) -> None:
        super().__init__(context)
        self.batch_size = context.spec.batch.max_size

    @abstractmethod
    def prepare(self, request: RequestT) -> list[ItemT]: ...

    def prepare_blocks(self, request: RequestT) -> bool:
        """Whether ``prepare`` does real work for this request (tokenising, decoding): the
        runtime then runs it on a thread, so the event loop never waits on it or on the
        model lock a forward pass holds. Light ones stay on the loop (a hop costs ~150 µs)."""
        return False

    @abstractmethod
    def forward(self, items: list[ItemT]) -> list[OutputT]: ...

    @abstractmethod
    def finish(self, request: RequestT, outputs: list[OutputT]) -> ResultT: ...

    @property
    def labels(self) -> list[str] | None:
        """Fixed labels when the model has its own; None when the caller chooses."""
        return None


def require(module: str, extra: str) -> Any:
    """Import an optional backend library or fail with the install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ExpertUnavailable(
            f"backend library {module!r} is not installed: pip install 'corral[{extra}]'"
        ) from exc


def tool_schema_of(cls: type[BaseExpert], name: str) -> dict[str, Any]:
    """The tool an expert class offers under the config name ``name``; from the class,
    so an expert not loaded yet is offered too (the call loads it)."""
    return {
        "type": "function",
        "function": {
            "name": f"{cls.task.value}_{name}".replace("-", "_"),
            "description": (cls.__doc__ or cls.task.value).strip().splitlines()[0],
            "parameters": cls.operation.input_model.model_json_schema(),
        },
    }
