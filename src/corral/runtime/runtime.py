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
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from corral.access import require_expert
from corral.artifacts import ArtifactStore
from corral.config import Config
from corral.errors import CorralError, ExpertFailed, ExpertUnavailable
from corral.experts._torch import torch_threads
from corral.experts.base import BaseExpert, Expert, LoadContext, SharedModels
from corral.experts.registry import expert_class
from corral.observe.metrics import Metrics
from corral.runtime.batcher import MicroBatcher
from corral.runtime.budget import device_used_bytes
from corral.runtime.handle import ExpertHandle, ExpertState, LoadListener
from corral.runtime.heap import freeze_loaded, thaw
from corral.runtime.isolated import IsolatedChat, isolated
from corral.runtime.placement import Placement
from corral.runtime.roster import Roster
from corral.tasks.chat.expert import COMPUTE_SECONDS, PROMPT, ChatExpert
from corral.uploads.files import FileStore

__all__ = ["ExpertHandle", "ExpertState", "LoadListener", "Runtime"]

log = logging.getLogger("corral.runtime")


class Runtime(Roster):
    """Runs the experts of one config in this process: loads them within the memory
    budget, batches their calls, and answers every request."""

    def __init__(
        self,
        config: Config,
        *,
        environ: Mapping[str, str] | None = None,
        metrics: Metrics | None = None,
        files: FileStore | None = None,
        artifacts: ArtifactStore | None = None,
    ) -> None:
        super().__init__(config, environ=environ, metrics=metrics, files=files, artifacts=artifacts)
        self._shared = SharedModels()
        self._executors: dict[str, ThreadPoolExecutor] = {}
        self.placement = Placement(config, self.handles, self._unload, lambda: self.metrics)

    # --- loading ---------------------------------------------------------------------
    async def load_all(
        self, listener: LoadListener | None = None, *, prefer: Sequence[str] = ()
    ) -> None:
        """Pre-warm, one expert at a time so memory is measured per expert: pinned ones
        first, then ``prefer`` (the most used last time), then config order, as long as
        each fits the budget without evicting another (the rest, and ``preload: false``
        experts, load on demand)."""
        for handle in self.handles.values():  # before measuring: may import torch
            _resolve_device(handle.spec.device, self.config.runtime.device)
        rank = {name: i for i, name in enumerate(prefer)}
        order = sorted(
            self.handles.values(),
            key=lambda h: (not h.spec.pin, rank.get(h.name, len(rank))),
        )
        for handle in order:
            if handle.state != ExpertState.UNLOADED or not (handle.spec.preload or handle.spec.pin):
                continue
            device = handle.spec.device
            if self.placement.limited and not self.placement.fits_now(
                handle, _resolve_device(device, self.config.runtime.device)
            ):
                log.info("%s left unloaded: no room in its budget; loads on demand", handle.name)
                continue
            if listener:
                listener.load_started(handle)
            # a failure is recorded on the handle; requests for it get a 503
            with contextlib.suppress(ExpertUnavailable):
                await self.ensure_loaded(handle)
            if listener:
                listener.load_finished(handle)
        self.warmed = True

    async def ensure_loaded(self, handle: ExpertHandle) -> BaseExpert:
        """Load on first use; concurrent callers wait for the same single load. Every
        route to an expert passes here, so this is where a key's grant is enforced."""
        require_expert(handle.name)
        if handle.state == ExpertState.READY and handle.expert is not None:
            return handle.expert
        async with handle.lock:
            if handle.state == ExpertState.READY and handle.expert is not None:
                return handle.expert  # someone else loaded it while we waited
            if handle.state == ExpertState.UNAVAILABLE:
                raise ExpertUnavailable(handle.reason)
            device = _resolve_device(handle.spec.device, self.config.runtime.device)
            async with self.placement.lock_for(device):
                handle.state = ExpertState.LOADING
                try:
                    await self.placement.make_room(handle, device)
                except ExpertUnavailable:
                    handle.state = ExpertState.UNLOADED  # no room now; it may fit later
                    raise
                # measured under the lock, so no other load's memory is counted as this one's
                expert, executor, measured = await self._load(
                    handle, device, device_used_bytes(device)
                )
                await self.placement.loaded(
                    handle, device, measured, reported=expert.resident_bytes()
                )
            handle.expert = expert
            freeze_loaded()  # its objects out of every later full collection (heap.py)
            if isinstance(expert, Expert):
                handle.batcher = MicroBatcher(
                    _with_threads(expert.forward, handle.spec.threads, expert.uses_torch),
                    max_size=handle.spec.batch.max_size,
                    max_wait_ms=handle.spec.batch.max_wait_ms,
                    max_tokens=handle.spec.batch.max_tokens,
                    executor=executor,
                    on_batch=self._batch_observer(handle.name),
                    on_cancel=self._cancel_observer(handle.name),
                )
            handle.state = ExpertState.READY
            handle.device = device
            if self.metrics is not None:
                self.metrics.observe_load(
                    handle.name, handle.load_seconds or 0.0, handle.memory_bytes or 0, device
                )
            return expert

    async def _load(
        self, handle: ExpertHandle, device: str, used_before: int
    ) -> tuple[BaseExpert, ThreadPoolExecutor, int]:
        """Import the backend and load; returns the memory it took, counted from
        ``used_before``, taken before any import, since torch and its kin take memory
        too (``Placement.loaded`` decides what the expert is taken to hold)."""
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        task, backend = handle.resolved.task, handle.resolved.backend
        assert task is not None and backend is not None  # else unavailable from the start
        try:
            cls = await loop.run_in_executor(None, expert_class, task, backend)
            executor = self._executor_for(handle, cls)
            expert = await loop.run_in_executor(
                executor, self._load_blocking, cls, handle, device, executor
            )
        except Exception as exc:
            handle.state = ExpertState.UNAVAILABLE
            detail = exc.message if isinstance(exc, CorralError) else f"{type(exc).__name__}: {exc}"
            handle.reason = f"expert {handle.name!r} failed to load: {detail}"
            log.exception("loading expert %r failed", handle.name)
            raise ExpertUnavailable(handle.reason) from None
        handle.load_seconds = time.perf_counter() - started
        measured = max(0, device_used_bytes(device) - used_before)
        log.info(
            "loaded %s (%s/%s) in %.1fs, %.0f MiB measured",
            handle.name,
            handle.resolved.task,
            handle.resolved.backend,
            handle.load_seconds,
            measured / 2**20,
        )
        return expert, executor, measured

    def _batch_observer(self, name: str) -> Callable[[int, list[float]], None] | None:
        metrics = self.metrics
        if metrics is None:
            return None
        return lambda size, waits: metrics.observe_batch(name, size, waits)

    def _cancel_observer(self, name: str) -> Callable[[], None] | None:
        metrics = self.metrics
        if metrics is None:
            return None
        return lambda: metrics.cancelled.labels(name).inc()

    def _executor_for(self, handle: ExpertHandle, cls: type[BaseExpert]) -> ThreadPoolExecutor:
        """A worker thread of its own for every expert: its loads and forwards run there.

        Why not one thread per device: then a 20-minute forecast or a graph fit held up
        every embedding behind it. With a thread each, experts only wait for their own
        queue. torch's OpenMP pool belongs to the calling thread, so two experts busy at
        once share the cores (a single-sentence encode measured 2.7x slower beside
        another torch thread); ``threads:`` sets a torch expert's intra-op threads on its
        worker, its CPU share (forecast, anomaly and graph experts run at
        ``options.threads``, 1 by default, already).
        """
        if handle.name not in self._executors:
            self._executors[handle.name] = ThreadPoolExecutor(
                1, thread_name_prefix=f"corral-{handle.name}"
            )
        return self._executors[handle.name]

    def _load_blocking(
        self, cls: type[BaseExpert], handle: ExpertHandle, device: str, executor: ThreadPoolExecutor
    ) -> BaseExpert:
        resolved = handle.resolved
        context = LoadContext(
            path=resolved.path or Path(),
            device=device,
            spec=handle.spec,
            shared=self._shared,
            base_url=resolved.base_url,
            executor=executor,
            artifacts=self.artifacts,
            files=self.files,
            limits=self.config.server.limits,
        )
        expert: BaseExpert
        if isolated(handle.spec.isolate, cls):
            assert issubclass(cls, ChatExpert)  # ``isolated`` refuses the others
            expert = IsolatedChat(context, cls, on_crash=self._crash_observer(handle.name))
        else:
            expert = cls(context)
        expert.load()
        return expert

    def _crash_observer(self, name: str) -> Callable[[], None] | None:
        metrics = self.metrics
        if metrics is None:
            return None
        return lambda: metrics.worker_crashes.labels(name).inc()

    # --- serving ---------------------------------------------------------------------
    async def submit(self, handle: ExpertHandle, request: Any) -> Any:
        """The one path every batched request takes: load, prepare, batch, forward, finish."""
        with self.placement.serving(handle):
            expert = await self.ensure_loaded(handle)
            assert isinstance(expert, Expert) and handle.batcher is not None
            if expert.prepare_blocks(request):
                items = await asyncio.to_thread(expert.prepare, request)
            else:
                items = expert.prepare(request)
            with self._failures_of(handle):
                outputs, seconds = await handle.batcher.submit_measured(items)
                result = expert.finish(request, outputs)
        self.account(handle, seconds, _input_tokens(result), 0)
        return result

    async def chat(self, handle: ExpertHandle, params: dict[str, Any]) -> dict[str, Any]:
        """A whole chat completion from a chat expert (OpenAI-shaped dicts in and out)."""
        with self.placement.serving(handle):
            expert = await self._chat_expert(handle)
            started = time.perf_counter()
            with self._failures_of(handle):
                reply = await expert.complete(params)
        seconds = reply.pop(COMPUTE_SECONDS, None) or time.perf_counter() - started
        self.keep_prompt(reply.pop(PROMPT, None))
        self.account_usage(handle, seconds, reply.get("usage"))
        return reply

    async def chat_stream(
        self, handle: ExpertHandle, params: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        """Chat completion chunks from a chat expert, as they are generated."""
        with self.placement.serving(handle):
            expert = await self._chat_expert(handle)
            started = time.perf_counter()
            with self._failures_of(handle):
                async for chunk in expert.stream(params):
                    if chunk.get("usage"):  # only the last chunk has it
                        seconds = chunk.pop(COMPUTE_SECONDS, None) or time.perf_counter() - started
                        self.keep_prompt(chunk.pop(PROMPT, None))
                        self.account_usage(handle, seconds, chunk["usage"])
                    yield chunk

    async def _chat_expert(self, handle: ExpertHandle) -> ChatExpert:
        expert = await self.ensure_loaded(handle)
        assert isinstance(expert, ChatExpert)
        return expert

    @contextlib.contextmanager
    def _failures_of(self, handle: ExpertHandle) -> Iterator[None]:
        """Typed errors pass; anything else is logged and becomes a generic ExpertFailed."""
        try:
            yield
        except CorralError:
            raise
        except Exception as exc:
            log.exception("expert %r failed", handle.name)
            raise ExpertFailed(
                f"expert {handle.name!r} failed on this request ({type(exc).__name__}); "
                "the server log has the details"
            ) from exc

    async def _unload(self, handle: ExpertHandle) -> None:
        """Drop a loaded expert: new requests see it unloaded at once (and load it again)."""
        batcher, expert = handle.batcher, handle.expert
        handle.batcher, handle.expert = None, None
        if handle.state == ExpertState.READY:
            handle.state = ExpertState.UNLOADED
        if batcher is not None:
            await batcher.close()
        if expert is not None:
            await expert.aclose()
            if self.metrics is not None and handle.device:
                self.metrics.unloaded(handle.name, handle.device)

    async def close(self) -> None:
        for handle in self.handles.values():
            await self._unload(handle)
        thaw()  # what the loads froze is collectable again (heap.py)
        for executor in self._executors.values():
            executor.shutdown(wait=False, cancel_futures=True)
        self._executors.clear()


def _with_threads(
    forward: Callable[[list[Any]], list[Any]], threads: int | None, uses_torch: bool
) -> Callable[[list[Any]], list[Any]]:
    """``forward`` at the expert's ``threads:`` (torch intra-op threads, its CPU share)."""
    if threads is None or not uses_torch:
        return forward

    def limited(items: list[Any]) -> list[Any]:
        with torch_threads(threads):
            return forward(items)

    return limited


def _input_tokens(result: Any) -> int:
    """Tokens an encoder read for a request: results carry ``tokens`` (one, or a list)."""
    if isinstance(result, list):
        return sum(int(getattr(r, "tokens", 0)) for r in result)
    return int(getattr(result, "tokens", 0))


def _resolve_device(expert_device: str, runtime_device: str) -> str:
    device = expert_device if expert_device != "auto" else runtime_device
    if device != "auto":
        return device
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"
