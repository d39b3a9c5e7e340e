"""One configured expert as the runtime sees it: its state, its loaded model, its batcher."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from corral.catalog import ResolvedModel
from corral.config import ModelConfig, Task
from corral.experts.base import BaseExpert
from corral.runtime.batcher import MicroBatcher

__all__ = ["ExpertHandle", "ExpertState", "LoadListener"]


class ExpertState(StrEnum):
    UNLOADED = "unloaded"
    LOADING = "loading"
    READY = "ready"
    UNAVAILABLE = "unavailable"  # weights missing, backend not installed, or load failed


class LoadListener(Protocol):
    """Told about loads as they happen, e.g. to draw a progress bar."""

    def load_started(self, handle: ExpertHandle) -> None: ...

    def load_finished(self, handle: ExpertHandle) -> None: ...


@dataclass(eq=False)
class ExpertHandle:
    """One configured expert and everything the runtime knows about it."""

    spec: ModelConfig
    resolved: ResolvedModel
    state: ExpertState = ExpertState.UNLOADED
    reason: str = ""
    expert: BaseExpert | None = None
    batcher: MicroBatcher[Any, Any] | None = None
    memory_bytes: int | None = None
    load_seconds: float | None = None
    device: str = ""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    upstream_error: str = ""  # why the upstream did not answer its last probe ("" = it did)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def task(self) -> Task | None:
        return self.resolved.task

    def status(self) -> tuple[str, str]:
        """(state, reason) as clients see them: an unreachable upstream is unavailable."""
        if self.upstream_error and self.state != ExpertState.UNAVAILABLE:
            return ExpertState.UNAVAILABLE.value, self.upstream_error
        return self.state.value, self.reason
