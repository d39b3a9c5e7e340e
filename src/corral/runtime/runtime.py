"""The embedded runtime: owns the experts, loads them once, and runs every request.

Every task goes through one path, ``Runtime.submit(handle, request)``:
load (single-flight, one lock per expert) -> ``prepare`` -> micro-batcher ->
``forward`` -> ``finish``. Errors that are not already typed become ExpertFailed
with the traceback logged server-side, never sent to the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import psutil

from corral.catalog import ResolvedModel, resolve
from corral.config import Config, ModelConfig, Task
from corral.errors import CorralError, ExpertFailed, ExpertUnavailable, ModelNotFound
from corral.experts.base import Expert, LoadContext, SharedModels
from corral.experts.registry import expert_class
from corral.runtime.batcher import MicroBatcher

__all__ = ["ExpertHandle", "ExpertState", "LoadListener", "Runtime"]

log = logging.getLogger("corral.runtime")


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
    expert: Expert | None = None  # type: ignore[type-arg]
    batcher: MicroBatcher[Any, Any] | None = None
    memory_bytes: int | None = None
    load_seconds: float | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def task(self) -> Task | None:
        return self.resolved.task


class Runtime:
    """Holds the experts of one config; create one per server (no globals)."""

    def __init__(self, config: Config, *, environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self._shared = SharedModels()
        self._executors: dict[str, ThreadPoolExecutor] = {}
        self.handles: dict[str, ExpertHandle] = {}
        for spec in config.models:
            handle = ExpertHandle(spec, resolve(spec, config.runtime, environ))
            self._mark_unavailable_early(handle)
            self.handles[spec.name] = handle

    # --- looking experts up ------------------------------------------------------------
    def find(self, task: Task, name: str | None) -> ExpertHandle:
        """The expert called ``name`` (or alias) for ``task``; the task's default if None."""
        candidates = [h for h in self.handles.values() if h.task == task]
        if name is None:
            if not candidates:
                raise ModelNotFound(f"no {task.value} expert is configured", param="model")
            return next((h for h in candidates if h.spec.default), candidates[0])
        spec = self.config.model_named(name)
        if spec is None or self.handles[spec.name].task != task:
            names = ", ".join(h.name for h in candidates) or "none configured"
            raise ModelNotFound(
                f"no {task.value} expert named {name!r}; available: {names}", param="model"
            )
        return self.handles[spec.name]

    @property
    def ready(self) -> bool:
        """Every expert that can load has loaded."""
        return all(
            h.state in (ExpertState.READY, ExpertState.UNAVAILABLE) for h in self.handles.values()
        )

    # --- loading ---------------------------------------------------------------------
    async def load_all(self, listener: LoadListener | None = None) -> None:
        """Pre-warm every expert, one at a time so memory is measured per expert."""
        for handle in self.handles.values():
            if handle.state == ExpertState.UNLOADED:
                if listener:
                    listener.load_started(handle)
                # a failure is recorded on the handle; requests for it get a 503
                with contextlib.suppress(ExpertUnavailable):
                    await self.ensure_loaded(handle)
                if listener:
                    listener.load_finished(handle)

    async def ensure_loaded(self, handle: ExpertHandle) -> Expert:  # type: ignore[type-arg]
        """Load on first use; concurrent callers wait for the same single load."""
        if handle.state == ExpertState.READY and handle.expert is not None:
            return handle.expert
        async with handle.lock:
            if handle.state == ExpertState.READY and handle.expert is not None:
                return handle.expert  # someone else loaded it while we waited
            if handle.state == ExpertState.UNAVAILABLE:
                raise ExpertUnavailable(handle.reason)
            handle.state = ExpertState.LOADING
            device = _resolve_device(handle.spec.device, self.config.runtime.device)
            executor = self._executor_for(device)
            try:
                loop = asyncio.get_running_loop()
                expert = await loop.run_in_executor(executor, self._load_blocking, handle, device)
            except Exception as exc:
                handle.state = ExpertState.UNAVAILABLE
                detail = (
                    exc.message if isinstance(exc, CorralError) else f"{type(exc).__name__}: {exc}"
                )
                handle.reason = f"expert {handle.name!r} failed to load: {detail}"
                log.exception("loading expert %r failed", handle.name)
                raise ExpertUnavailable(handle.reason) from None
            handle.expert = expert
            handle.batcher = MicroBatcher(
                expert.forward,
                max_size=handle.spec.batch.max_size,
                max_wait_ms=handle.spec.batch.max_wait_ms,
                executor=executor,
            )
            handle.state = ExpertState.READY
            return expert

    def _executor_for(self, device: str) -> ThreadPoolExecutor:
        """One worker thread per device runs every load and forward placed on it.

        torch's OpenMP pool belongs to the calling thread: two threads driving torch on
        the same cores oversubscribe them, and a single-sentence encode measured 2.7x
        slower here (18 ms vs 6.7 ms). One thread per device keeps one pool per device.
        """
        if device not in self._executors:
            self._executors[device] = ThreadPoolExecutor(1, thread_name_prefix=f"corral-{device}")
        return self._executors[device]

    def _load_blocking(self, handle: ExpertHandle, device: str) -> Expert:  # type: ignore[type-arg]
        resolved = handle.resolved
        assert resolved.task and resolved.backend and resolved.path  # checked at construction
        cls = expert_class(resolved.task, resolved.backend)
        context = LoadContext(
            path=resolved.path,
            device=device,
            spec=handle.spec,
            shared=self._shared,
        )
        process = psutil.Process(os.getpid())
        rss_before, started = process.memory_info().rss, time.perf_counter()
        expert = cls(context)
        expert.load()
        handle.load_seconds = time.perf_counter() - started
        handle.memory_bytes = max(0, process.memory_info().rss - rss_before)
        log.info(
            "loaded %s (%s/%s) in %.1fs",
            handle.name,
            resolved.task,
            resolved.backend,
            handle.load_seconds,
        )
        return expert

    def _mark_unavailable_early(self, handle: ExpertHandle) -> None:
        """Experts that cannot load are known before any request: say why, once."""
        r = handle.resolved
        if r.task is None:
            handle.reason = f"expert {r.name!r}: cannot tell the task of {r.model!r}; set `task:`"
        elif r.base_url is not None or r.backend is None:
            handle.reason = (
                f"expert {r.name!r}: {r.task.value} backend {r.backend or '?'} is not served by "
                "this version of corral"
            )
        elif r.path is None:
            handle.reason = (
                f"expert {r.name!r}: weights for {r.model!r} not found (looked in: "
                f"{'; '.join(r.looked)}); supply them: {r.hint}"
            )
        else:
            try:
                expert_class(r.task, r.backend)
                return
            except ExpertUnavailable as exc:
                handle.reason = f"expert {r.name!r}: {exc.message}"
        handle.state = ExpertState.UNAVAILABLE

    # --- serving ---------------------------------------------------------------------
    async def submit(self, handle: ExpertHandle, request: Any) -> Any:
        """The one path every request takes: load, prepare, batch, forward, finish."""
        expert = await self.ensure_loaded(handle)
        assert handle.batcher is not None
        items = expert.prepare(request)
        try:
            outputs = await handle.batcher.submit(items)
            return expert.finish(request, outputs)
        except CorralError:
            raise
        except Exception as exc:
            log.exception("expert %r failed", handle.name)
            raise ExpertFailed(
                f"expert {handle.name!r} failed on this request ({type(exc).__name__}); "
                "the server log has the details"
            ) from exc

    async def close(self) -> None:
        for handle in self.handles.values():
            if handle.batcher is not None:
                await handle.batcher.close()
            if handle.expert is not None:
                handle.expert.unload()
            handle.expert, handle.batcher = None, None
            if handle.state == ExpertState.READY:
                handle.state = ExpertState.UNLOADED
        for executor in self._executors.values():
            executor.shutdown(wait=False, cancel_futures=True)
        self._executors.clear()


def _resolve_device(expert_device: str, runtime_device: str) -> str:
    device = expert_device if expert_device != "auto" else runtime_device
    if device != "auto":
        return device
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"
