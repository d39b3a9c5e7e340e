"""``ExpertHost``: what the router, the app and the routes need of a runtime, whichever
runs the experts (in this process, ``Runtime``; in Ray Serve replicas, ``RemoteRuntime``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from corral.artifacts import ArtifactStore
from corral.config import Config, Task
from corral.experts.base import BaseExpert
from corral.observe.cost import CostMeter
from corral.observe.metrics import Metrics
from corral.runtime.handle import ExpertHandle, LoadListener
from corral.uploads.files import FileStore

__all__ = ["ExpertHost"]


class ExpertHost(Protocol):
    config: Config
    handles: dict[str, ExpertHandle]
    files: FileStore
    artifacts: ArtifactStore
    metrics: Metrics | None
    costs: CostMeter | None

    def find(self, task: Task, name: str | None) -> ExpertHandle: ...

    @property
    def ready(self) -> bool: ...

    async def load_all(
        self, listener: LoadListener | None = None, *, prefer: Sequence[str] = ()
    ) -> None: ...

    async def ensure_loaded(self, handle: ExpertHandle) -> BaseExpert: ...

    async def submit(self, handle: ExpertHandle, request: Any) -> Any: ...

    async def chat(self, handle: ExpertHandle, params: dict[str, Any]) -> dict[str, Any]: ...

    def chat_stream(
        self, handle: ExpertHandle, params: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]: ...

    async def close(self) -> None: ...
