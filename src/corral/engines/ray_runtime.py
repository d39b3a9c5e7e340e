"""The ingress's runtime on Ray Serve: the Router's ``submit``/``chat``/``chat_stream``
seam, forwarded to each expert's deployment.

Routing, traces, metrics and cost accounting run in the ingress exactly as on the
embedded engine (a ``Roster``, as the embedded ``Runtime`` is: handles, lookup and
accounting, without the embedded loader, batchers and memory budget); only where an expert
runs changes. A replica measures each call and returns its charges; the
ingress prices them. Uploads named by id are read here (``ray_uploads``), since
``/v1/files`` keeps them in the ingress. Each reply also brings what the replica
observed since its last one (its load, its forward passes' sizes and queue waits),
recorded here in the same metrics as embedded: every observation reaches one ingress
replica once, so with several ingress replicas each ``/metrics`` has its share (sum
them). A replica that dies is replaced by Serve, and the call is retried on the
replacement (requests are idempotent: encoders and whole chat completions).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator

from corral.access import require_expert
from corral.config import Config
from corral.engines.ray_replica import CHARGES_KEY, REPORT_KEY, ReplicaInfo, ReplicaReport, Reply
from corral.engines.ray_uploads import with_uploads
from corral.errors import CorralError, ExpertFailed, ExpertUnavailable, NoCapacity
from corral.experts.base import BaseExpert, LoadContext
from corral.experts.registry import expert_class
from corral.observe.trace import Charge
from corral.runtime import ExpertHandle, ExpertState, LoadListener
from corral.runtime.roster import Roster
from corral.uploads.files import FileStore

__all__ = ["RemoteExpert", "RemoteRuntime"]

log = logging.getLogger("corral.engines.ray")

# a replica that died: Serve starts another; these are worth a retry on it
_REPLICA_GONE = (RayActorError, DeploymentUnavailableError)


class RemoteExpert(BaseExpert):
    """An expert whose weights live in its deployment's replicas. The ingress holds its
    description only (input model, tool schema), for the coordinator's tools."""

    schema: dict[str, Any] | None = None

    def load(self) -> None:  # the replicas load; nothing is held here
        return None

    def unload(self) -> None:
        return None

    def tool_schema(self) -> dict[str, Any]:
        return self.schema if self.schema is not None else super().tool_schema()


class RemoteRuntime(Roster):
    """The experts of a config, run in Ray Serve deployments (one per expert)."""

    def __init__(
        self,
        config: Config,
        deployments: Mapping[str, DeploymentHandle],
        *,
        retries: int = 5,
        retry_wait_s: float = 1.0,
        environ: Mapping[str, str] | None = None,
        files: FileStore | None = None,
    ) -> None:
        super().__init__(config, environ=environ, files=files)
        self._deployments = dict(deployments)
        self._retries = retries
        self._retry_wait_s = retry_wait_s
        self._streams = {name: d.options(stream=True) for name, d in self._deployments.items()}

    # --- what the replicas hold ------------------------------------------------------
    async def load_all(
        self, listener: LoadListener | None = None, *, prefer: Sequence[str] = ()
    ) -> None:
        """Ask each expert's deployment what it loaded (Serve started the replicas)."""
        for handle in self.handles.values():
            if handle.state == ExpertState.UNAVAILABLE:
                continue
            if listener:
                listener.load_started(handle)
            with contextlib.suppress(ExpertUnavailable):  # recorded on the handle: 503s
                await self.ensure_loaded(handle)
            if listener:
                listener.load_finished(handle)
        self.warmed = True

    async def ensure_loaded(self, handle: ExpertHandle) -> BaseExpert:
        """The expert's description from a replica, once; checks the key's grant."""
        require_expert(handle.name)
        if handle.state == ExpertState.READY and handle.expert is not None:
            return handle.expert
        async with handle.lock:
            if handle.state == ExpertState.UNAVAILABLE:
                raise ExpertUnavailable(handle.reason)
            if handle.expert is None:
                reply: Reply = await self._call(handle, "describe")
                self._learn(handle, reply.value)
                self._record(handle, reply.report)
            if handle.state == ExpertState.UNAVAILABLE:
                raise ExpertUnavailable(handle.reason)
            assert handle.expert is not None
            return handle.expert

    def _learn(self, handle: ExpertHandle, info: ReplicaInfo) -> None:
        handle.state = ExpertState(info.state)
        handle.reason = info.reason
        handle.device = info.device
        handle.memory_bytes, handle.load_seconds = info.memory_bytes, info.load_seconds
        if handle.state != ExpertState.READY:
            return
        task, backend = handle.resolved.task, handle.resolved.backend
        assert task is not None and backend is not None  # else unavailable from the start
        cls = expert_class(task, backend)
        remote = type(
            f"Remote{cls.__name__}",
            (RemoteExpert,),
            {
                "task": cls.task,
                "backend": cls.backend,
                "operation": cls.operation,
                "__doc__": cls.__doc__,
                "schema": info.tool_schema,
            },
        )
        context = LoadContext(
            path=handle.resolved.path or Path(), device=info.device, spec=handle.spec
        )
        handle.expert = remote(context)

    # --- serving: the Router's seam ----------------------------------------------------
    async def submit(self, handle: ExpertHandle, request: Any) -> Any:
        """The call, its uploads read here first: a replica has no store of its own."""
        await self.ensure_loaded(handle)
        request = await with_uploads(request, self.files, self.config.server.limits)
        reply: Reply = await self._call(handle, "submit", request)
        self._charge(handle, reply.charges)
        self._record(handle, reply.report)
        return reply.value

    async def chat(self, handle: ExpertHandle, params: dict[str, Any]) -> dict[str, Any]:
        await self.ensure_loaded(handle)
        reply: Reply = await self._call(handle, "chat", params)
        self._charge(handle, reply.charges)
        self._record(handle, reply.report)
        return reply.value  # type: ignore[no-any-return]

    async def chat_stream(
        self, handle: ExpertHandle, params: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        """Chunks as the replica generates them; retried only before the first one."""
        await self.ensure_loaded(handle)
        for attempt in range(self._retries + 1):
            chunks: DeploymentResponseGenerator[Any] = self._streams[
                handle.name
            ].chat_stream.remote(params)  # type: ignore[assignment]
            try:
                first = await self._translated(handle, anext(chunks))
            except _ReplicaGone as gone:
                await self._before_retry(handle, attempt, gone.cause)
                continue
            break
        item = first
        while True:
            if CHARGES_KEY in item:
                self._charge(handle, item[CHARGES_KEY])
                self._record(handle, item[REPORT_KEY])
                return
            yield item
            try:
                item = await self._translated(handle, anext(chunks))
            except _ReplicaGone as gone:  # mid-stream: the answer is half sent
                raise ExpertFailed(
                    f"expert {handle.name!r}: its replica died mid-stream ({gone.cause})"
                ) from None
            except StopAsyncIteration:
                return

    def _charge(self, handle: ExpertHandle, charges: list[Charge]) -> None:
        """The replica measured; the ingress prices (the same meter as embedded)."""
        for charge in charges:
            self.account(handle, charge.seconds, charge.tokens_in, charge.tokens_out)

    def _record(self, handle: ExpertHandle, report: ReplicaReport) -> None:
        """A replica's observations into this app's metrics, as embedded records them.
        A load is a new replica's: /v1/models shows the latest one's measurements."""
        if report.load is not None:
            load = report.load
            handle.memory_bytes, handle.load_seconds = load.memory_bytes, load.seconds
            if self.metrics is not None:
                self.metrics.observe_load(handle.name, load.seconds, load.memory_bytes, load.device)
        if self.metrics is not None:
            for size, waits in report.batches:
                self.metrics.observe_batch(handle.name, size, waits)

    async def _call(self, handle: ExpertHandle, method: str, *args: Any) -> Any:
        deployment = self._deployments[handle.name]
        for attempt in range(self._retries + 1):
            try:
                return await self._translated(handle, getattr(deployment, method).remote(*args))
            except _ReplicaGone as gone:
                await self._before_retry(handle, attempt, gone.cause)
        raise AssertionError("unreachable: the last attempt raises")

    async def _before_retry(self, handle: ExpertHandle, attempt: int, cause: str) -> None:
        if attempt >= self._retries:
            raise ExpertUnavailable(
                f"expert {handle.name!r}: its replicas kept failing ({cause}); "
                f"tried {attempt + 1} times",
                retry_after=self._retry_wait_s * 5,
            )
        log.warning("expert %r: replica gone (%s); retrying on another", handle.name, cause)
        await asyncio.sleep(self._retry_wait_s * (attempt + 1))

    async def _translated(self, handle: ExpertHandle, call: Any) -> Any:
        """Await a call to a replica; its errors as corral's own, typed as embedded."""
        try:
            return await call
        except RayTaskError as exc:  # the expert code raised in the replica
            cause = exc.cause
            if isinstance(cause, CorralError):
                raise cause from None
            if isinstance(cause, _REPLICA_GONE):
                raise _ReplicaGone(type(cause).__name__) from None
            log.error("expert %r failed in its replica: %s", handle.name, exc)
            raise ExpertFailed(
                f"expert {handle.name!r} failed on this request ({type(cause).__name__}); "
                "the replica's log has the details"
            ) from None
        except _REPLICA_GONE as exc:
            raise _ReplicaGone(type(exc).__name__) from None
        except BackPressureError:
            raise NoCapacity(
                f"expert {handle.name!r}: every replica's queue is full", retry_after=1.0
            ) from None

    async def close(self) -> None:
        """Nothing to unload here: Serve stops the replicas."""
        for handle in self.handles.values():
            handle.expert = None
            if handle.state == ExpertState.READY:
                handle.state = ExpertState.UNLOADED


class _ReplicaGone(Exception):
    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause
