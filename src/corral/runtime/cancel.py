"""Stopping work nobody waits for any more, at the next safe point.

A request that times out or whose client disconnects has its task cancelled; its place
in the micro-batcher is a cancelled future. Work already running on the expert's worker
thread cannot be interrupted from outside, so the expert checks in: between epochs,
series, pages and chunks it calls ``checkpoint()``, which raises ``Cancelled`` once
every caller of the batch running on this thread has gone. The worker is then free
for the next request within one step's time, not the whole fit's.

``Progress`` is the other half: a request's record of whether its work ever started, so
a timeout spent queued behind another request's work is not held against the expert's
circuit breaker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

__all__ = [
    "Cancelled",
    "Progress",
    "cancellable",
    "checkpoint",
    "current_progress",
    "deadline",
    "seconds_left",
    "tracking_progress",
]

_scope = threading.local()  # the running batch's "has everyone left?" on this worker thread


class Cancelled(Exception):
    """Every caller of the running batch has gone; raised at a safe point to stop."""


@contextmanager
def cancellable(abandoned: Callable[[], bool]) -> Iterator[None]:
    """Run a batch on this thread with ``abandoned`` telling whether its callers left."""
    previous = getattr(_scope, "abandoned", None)
    _scope.abandoned = abandoned
    try:
        yield
    finally:
        _scope.abandoned = previous


def checkpoint() -> None:
    """A safe point: raise ``Cancelled`` if nobody waits for this work any more."""
    abandoned = getattr(_scope, "abandoned", None)
    if abandoned is not None and abandoned():
        raise Cancelled


@dataclass
class Progress:
    """Whether this request's items reached the expert's worker: None when nothing was
    queued (chat, which has no batcher), False while queued, True once running."""

    started: bool | None = None


_progress: ContextVar[Progress | None] = ContextVar("corral_progress", default=None)
_deadline: ContextVar[tuple[float, float] | None] = ContextVar("corral_deadline", default=None)


@contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """A request's own time limit (its ``timeout_s``) for the expert calls in the block."""
    if seconds is None:
        yield
        return
    token = _deadline.set((time.monotonic() + seconds, seconds))
    try:
        yield
    finally:
        _deadline.reset(token)


def seconds_left() -> tuple[float, float] | None:
    """(seconds left, seconds asked for) of the request's deadline; None without one."""
    current = _deadline.get()
    if current is None:
        return None
    return max(0.0, current[0] - time.monotonic()), current[1]


def current_progress() -> Progress | None:
    return _progress.get()


@contextmanager
def tracking_progress() -> Iterator[Progress]:
    """Give the requests submitted inside the block a ``Progress`` to stamp."""
    progress = Progress()
    token = _progress.set(progress)
    try:
        yield progress
    finally:
        _progress.reset(token)
