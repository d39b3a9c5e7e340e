"""A chat expert in a supervised worker process of its own (``isolate: true``).

llama.cpp is native code: a bad grammar or a bug in a kernel ends its process with a
signal, and in-process that was the whole server, every expert and every client. Here
the expert runs in ``corral.runtime.worker_process`` behind the same ``ChatExpert``
interface; when the worker dies, only the requests it was running fail (503 with
Retry-After, code ``worker_crashed``), the crash is logged with their trace ids and
counted (``corral_worker_crashes``), and a new worker loads after a backoff (0.5 s,
doubling to 30 s while it keeps crashing within a minute of starting).

What crosses the pipes is JSON (``worker_protocol``): OpenAI-shaped params in,
completions and chunks out, which is what chat experts speak anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar

import corral
from corral.errors import ExpertUnavailable, WorkerCrashed
from corral.experts.base import BaseExpert, LoadContext, tool_schema_of
from corral.observe.trace import active_trace
from corral.runtime.worker_protocol import raise_error, read_frame, write_frame
from corral.tasks.chat.expert import ChatExpert

__all__ = ["IsolatedChat", "isolated"]

log = logging.getLogger("corral.runtime")
FIRST_BACKOFF_S, MAX_BACKOFF_S = 0.5, 30.0
HEALTHY_AFTER_S = 60.0  # a worker up this long before it dies starts the backoff afresh
CLOSE_WAIT_S = 10.0


def isolated(spec_isolate: bool | None, cls: type[BaseExpert]) -> bool:
    """Whether an expert runs in a worker process: its ``isolate:``, else the backend's
    default (True for native backends that can crash, llama.cpp)."""
    if spec_isolate is None:
        return cls.isolate_by_default
    if spec_isolate and not issubclass(cls, ChatExpert):
        raise ExpertUnavailable(
            f"isolate: true is for chat experts (llama.cpp); {cls.backend!r} serves "
            f"{cls.task.value} in the server process: remove `isolate:`"
        )
    return spec_isolate


@dataclass
class _Call:
    """One request the worker is running, and where its frames go."""

    loop: asyncio.AbstractEventLoop
    trace_id: str | None
    frames: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)

    def post(self, frame: dict[str, Any]) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: the server is shutting down
            self.loop.call_soon_threadsafe(self.frames.put_nowait, frame)


class IsolatedChat(ChatExpert):
    """The chat expert ``cls`` run in a worker process, restarted when it dies."""

    backend: ClassVar[str] = "isolated"
    uses_torch: ClassVar[bool] = False

    def __init__(
        self,
        context: LoadContext,
        cls: type[ChatExpert],
        on_crash: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(context)
        self.inner = cls
        self._on_crash = on_crash
        self._ids = itertools.count(1)
        self._calls: dict[int, _Call] = {}
        self._write_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._closing = False
        self._resident: int | None = None
        self._started_at = 0.0
        self._load_seconds = 0.0
        self._next_backoff = FIRST_BACKOFF_S
        self._up_at = 0.0  # monotonic time the next worker is expected, while there is none

    # --- lifecycle (worker threads) ------------------------------------------------------
    def load(self) -> None:
        self._start_worker()

    def unload(self) -> None:
        with self._state_lock:
            self._closing = True
            process, self._process = self._process, None
        for call in list(self._calls.values()):
            call.post({"error": {"type": "ExpertUnavailable", "message": "the expert unloaded"}})
        if process is None:
            return
        try:
            self._write(process, {"op": "close"})
            process.wait(timeout=CLOSE_WAIT_S)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()
        _close_pipe(process.stdin)  # stdout is the reader thread's to close

    def resident_bytes(self) -> int | None:
        return self._resident

    def tool_schema(self) -> dict[str, Any]:
        return tool_schema_of(self.inner, self.context.spec.name)

    def _start_worker(self) -> None:
        """Spawn a worker, load the expert in it, and read its frames on a thread."""
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "corral.runtime.worker_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_worker_environment(),
        )
        assert process.stdin is not None and process.stdout is not None
        try:
            self._write(process, self._load_frame())
            reply = read_frame(process.stdout)
        except (OSError, ValueError):
            reply = None
        if reply is None or reply.get("op") != "ready":
            self._stop(process)
            if reply is not None and "error" in reply:
                raise_error(reply["error"])
            raise ExpertUnavailable(
                f"expert {self.context.spec.name!r}: its worker process "
                f"{_describe_exit(process.returncode)} while loading; the server log has why"
            )
        self._resident = reply.get("process_bytes") or reply.get("resident_bytes")
        inner = reply.get("runtime_in_use") or self.inner.backend
        self.runtime_in_use = f"{inner} (worker process)"
        self._load_seconds = time.perf_counter() - started
        with self._state_lock:
            closed = self._closing  # unloaded while this (re)start was loading
            if not closed:
                self._process, self._started_at = process, time.monotonic()
        if closed:
            self._stop(process)
            return
        threading.Thread(
            target=self._read,
            args=(process,),
            name=f"corral-{self.context.spec.name}-frames",
            daemon=True,
        ).start()
        log.info("expert %r runs in worker process %d", self.context.spec.name, process.pid)

    def _load_frame(self) -> dict[str, Any]:
        return {
            "op": "load",
            "task": self.inner.task.value,
            "backend": self.inner.backend,
            "spec": self.context.spec.model_dump(mode="json"),
            "path": str(self.context.path),
            "device": self.context.device,
            "limits": self.context.limits.model_dump(mode="json"),
        }

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        """Hand each frame to its call; when the pipe ends, the worker is gone."""
        assert process.stdout is not None
        try:
            while (frame := read_frame(process.stdout)) is not None:
                call = self._calls.get(frame.get("id", -1))
                if call is not None:
                    call.post(frame)
        except (OSError, ValueError):
            log.exception("expert %r: unreadable frame from its worker", self.context.spec.name)
            process.kill()
        _close_pipe(process.stdout)
        self._ended(process)

    def _ended(self, process: subprocess.Popen[bytes]) -> None:
        code = process.wait()
        now = time.monotonic()
        with self._state_lock:
            if self._closing or process is not self._process:
                return
            self._process = None
            _close_pipe(process.stdin)
            healthy = now - self._started_at > HEALTHY_AFTER_S
            delay = FIRST_BACKOFF_S if healthy else self._next_backoff
            self._next_backoff = min(MAX_BACKOFF_S, delay * 2)
            self._up_at = now + delay + self._load_seconds
            calls = list(self._calls.values())
        name = self.context.spec.name
        log.error(
            "expert %r: its worker process %d %s while running %d request(s) (trace ids: %s); "
            "restarting it in %.1f s",
            name,
            process.pid,
            _describe_exit(code),
            len(calls),
            ", ".join(c.trace_id or "-" for c in calls) or "none",
            delay,
        )
        if self._on_crash is not None:
            self._on_crash()
        message = (
            f"expert {name!r} crashed while running this request (its worker process "
            f"{_describe_exit(code)}); it is restarting: retry shortly"
        )
        for call in calls:
            call.post({"crashed": message, "retry_after": self._retry_after()})
        self._restart_in(delay)

    def _restart_in(self, delay: float) -> None:
        timer = threading.Timer(delay, self._restart)
        timer.daemon = True  # a pending restart never holds up the server's shutdown
        timer.start()

    def _restart(self) -> None:
        if self._closing:
            return
        try:
            self._start_worker()
        except Exception as exc:
            with self._state_lock:
                delay = self._next_backoff
                self._next_backoff = min(MAX_BACKOFF_S, delay * 2)
                self._up_at = time.monotonic() + delay + self._load_seconds
            log.error(
                "expert %r: restarting its worker failed (%s); next try in %.1f s",
                self.context.spec.name,
                exc,
                delay,
            )
            self._restart_in(delay)

    def _stop(self, process: subprocess.Popen[bytes]) -> None:
        """End a worker that never got to serve (no reader thread owns its pipes)."""
        if process.poll() is None:
            process.kill()
        process.wait()
        _close_pipe(process.stdin)
        _close_pipe(process.stdout)

    # --- requests (event loop) -----------------------------------------------------------
    async def complete(self, params: dict[str, Any]) -> dict[str, Any]:
        call_id, call = self._open("complete", params)
        try:
            frame = await call.frames.get()
        except asyncio.CancelledError:
            self._cancel(call_id)
            raise
        finally:
            self._calls.pop(call_id, None)
        self._raise_if_failed(frame)
        result: dict[str, Any] = frame["result"]
        return result

    async def stream(self, params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        call_id, call = self._open("stream", params)
        finished = False
        try:
            while "chunk" in (frame := await call.frames.get()):
                yield frame["chunk"]
            finished = True
            self._raise_if_failed(frame)
        finally:
            self._calls.pop(call_id, None)
            if not finished:
                self._cancel(call_id)

    def _open(self, op: str, params: dict[str, Any]) -> tuple[int, _Call]:
        process = self._process
        if process is None:
            raise WorkerCrashed(
                f"expert {self.context.spec.name!r} is restarting after a crash",
                retry_after=self._retry_after(),
            )
        trace = active_trace()
        call_id = next(self._ids)
        call = _Call(asyncio.get_running_loop(), trace.id if trace is not None else None)
        self._calls[call_id] = call  # before the frame leaves, so no answer can come first
        try:
            self._write(process, {"op": op, "id": call_id, "params": params})
        except OSError:
            self._calls.pop(call_id, None)
            raise WorkerCrashed(
                f"expert {self.context.spec.name!r}'s worker process is gone; it is restarting",
                retry_after=self._retry_after(),
            ) from None
        return call_id, call

    def _cancel(self, call_id: int) -> None:
        process = self._process
        if process is not None:
            with contextlib.suppress(OSError):  # the worker is gone; its reader says so
                self._write(process, {"op": "cancel", "id": call_id})

    def _raise_if_failed(self, frame: dict[str, Any]) -> None:
        if "crashed" in frame:
            raise WorkerCrashed(frame["crashed"], retry_after=frame.get("retry_after"))
        if "error" in frame:
            raise_error(frame["error"])

    def _retry_after(self) -> float:
        return max(1.0, round(self._up_at - time.monotonic(), 1))

    def _write(self, process: subprocess.Popen[bytes], message: dict[str, Any]) -> None:
        assert process.stdin is not None
        with self._write_lock:
            write_frame(process.stdin, message)


def _worker_environment() -> dict[str, str]:
    """The server's environment, with this corral first on the path (a source checkout
    served with PYTHONPATH or from tests must run the same code in its workers)."""
    root = str(Path(corral.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _close_pipe(pipe: IO[bytes] | None) -> None:
    if pipe is not None:
        with contextlib.suppress(OSError):
            pipe.close()


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"
