"""The process an isolated chat expert runs in: ``python -m corral.runtime.worker_process``.

Native code (llama.cpp first) can take its whole process down with a signal; here that
process holds one expert and nothing else, so the server only loses this expert's
in-flight requests and starts a new worker (``corral.runtime.isolated``). The worker
reads frames (``worker_protocol``) on stdin and answers on what was stdout: fd 1 is
pointed at stderr first, so a library that prints cannot corrupt the frames.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import psutil

from corral.config import LimitsConfig, ModelConfig, Task
from corral.errors import CorralError
from corral.experts.base import LoadContext
from corral.experts.registry import expert_class
from corral.runtime.worker_protocol import error_frame, read_frame, write_frame
from corral.tasks.chat.expert import ChatExpert

log = logging.getLogger("corral.worker")


class Worker:
    """One loaded chat expert answering the server's frames, several calls at once."""

    def __init__(self, frames_out: IO[bytes]) -> None:
        self.out = frames_out
        self.expert: ChatExpert | None = None
        self.calls: dict[int, asyncio.Task[None]] = {}
        self.name = "?"
        # the expert's one thread: it loads and generates there (a llama.cpp context driven
        # from another thread than the one that loaded it measured 3x slower per token)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="corral-expert")

    def send(self, message: dict[str, Any]) -> None:
        write_frame(self.out, message)  # only the event loop's thread writes

    def load(self, frame: dict[str, Any]) -> None:
        spec = ModelConfig.model_validate(frame["spec"])
        self.name = spec.name
        task, backend = Task(frame["task"]), str(frame["backend"])
        context = LoadContext(
            path=Path(frame["path"]),
            device=str(frame["device"]),
            spec=spec,
            executor=self.executor,
            limits=LimitsConfig.model_validate(frame["limits"]),
        )
        cls = expert_class(task, backend)
        expert = cls(context)
        if not isinstance(expert, ChatExpert):
            raise TypeError(f"{cls.__name__} is not a chat expert; only those run isolated")
        expert.load()
        self.expert = expert

    def start(self, frame: dict[str, Any]) -> None:
        call_id = int(frame["id"])
        run = self._complete if frame["op"] == "complete" else self._stream
        task = asyncio.create_task(run(call_id, frame["params"]))
        self.calls[call_id] = task
        task.add_done_callback(lambda _: self.calls.pop(call_id, None))

    def cancel(self, frame: dict[str, Any]) -> None:
        task = self.calls.get(int(frame["id"]))
        if task is not None:
            task.cancel()

    async def _complete(self, call_id: int, params: dict[str, Any]) -> None:
        assert self.expert is not None
        try:
            result = await self.expert.complete(params)
        except asyncio.CancelledError:
            return
        except Exception as exc:
            self._failed(call_id, exc)
            return
        self.send({"id": call_id, "result": result})

    async def _stream(self, call_id: int, params: dict[str, Any]) -> None:
        assert self.expert is not None
        try:
            async for chunk in self.expert.stream(params):
                self.send({"id": call_id, "chunk": chunk})
        except asyncio.CancelledError:
            return
        except Exception as exc:
            self._failed(call_id, exc)
            return
        self.send({"id": call_id, "end": True})

    def _failed(self, call_id: int, exc: Exception) -> None:
        if not isinstance(exc, CorralError):  # corral's own are the caller's, and say why
            log.error("expert %r failed on a request", self.name, exc_info=exc)
        self.send({"id": call_id, "error": error_frame(exc, self.name)})

    async def close(self) -> None:
        for task in list(self.calls.values()):
            task.cancel()
        if self.expert is not None:
            await self.expert.aclose()


async def serve(frames_in: IO[bytes], frames_out: IO[bytes]) -> None:
    """Load, then answer frames until ``close`` or the server goes away."""
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    def read() -> None:  # a thread: reading the pipe blocks
        while True:
            frame = read_frame(frames_in)
            loop.call_soon_threadsafe(inbox.put_nowait, frame)
            if frame is None:
                return

    threading.Thread(target=read, name="corral-frames", daemon=True).start()
    worker = Worker(frames_out)
    first = await inbox.get()
    if first is None:
        return
    try:
        await loop.run_in_executor(worker.executor, worker.load, first)
    except Exception as exc:
        log.error("loading the isolated expert failed", exc_info=exc)
        worker.send({"op": "error", "error": error_frame(exc, worker.name)})
        return
    assert worker.expert is not None
    worker.send(
        {
            "op": "ready",
            "pid": os.getpid(),
            "resident_bytes": worker.expert.resident_bytes(),
            # all that unloading frees: the model and this interpreter around it
            "process_bytes": psutil.Process().memory_info().rss,
            "runtime_in_use": worker.expert.runtime_in_use,
        }
    )
    while (frame := await inbox.get()) is not None and frame.get("op") != "close":
        if frame["op"] == "cancel":
            worker.cancel(frame)
        else:
            worker.start(frame)
    await worker.close()


def main() -> None:
    frames_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints (native or Python) go to the log, never into the frames
    sys.stdout = sys.stderr
    logging.basicConfig(
        level=os.environ.get("CORRAL_WORKER_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s corral.worker[%(process)d]: %(message)s",
    )
    # unbuffered: a buffered stdin's lock, held by the blocked reader thread, stops the
    # interpreter's shutdown with a fatal error
    frames_in = os.fdopen(os.dup(0), "rb", buffering=0)
    asyncio.run(serve(frames_in, frames_out))


if __name__ == "__main__":
    main()
