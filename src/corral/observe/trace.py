"""The request trace: every routing decision and expert step of one request, with times.

A trace is created per HTTP request (``server/tracing.py``), reachable anywhere below it
through ``current_trace()``, returned in the ``x-corral-trace-id`` header and kept in a
bounded in-memory ``TraceStore`` for ``GET /v1/traces/{id}``.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace as otel

__all__ = [
    "Charge",
    "Decision",
    "Step",
    "Trace",
    "TraceStore",
    "activate",
    "active_trace",
    "current_trace",
    "new_trace_id",
]


@dataclass
class Decision:
    """One routing choice: which stage made it, what it chose, why, and how long it took."""

    stage: str  # explicit | default | semantic | cascade | coordinator | fallback | circuit
    choice: str  # the expert or route chosen ("" when the stage declined)
    reason: str
    score: float | None = None
    seconds: float = 0.0
    scores: dict[str, Any] | None = None  # what a measured rule compared (stage "auto")


@dataclass
class Step:
    """One thing an expert did for the request (an LLM turn or a tool call)."""

    kind: str  # "llm" or "tool"
    name: str
    seconds: float
    started: float = 0.0  # seconds after the request began
    arguments: dict[str, Any] | None = None
    result_chars: int = 0
    result: Any = None  # a tool's result as JSON data (text cut at 4000 characters if longer)
    error: str | None = None
    status: int | None = None  # a failed tool call: the HTTP status its endpoint would give


@dataclass
class Charge:
    """One expert call's measured compute and tokens, and their price."""

    expert: str
    device: str
    seconds: float  # compute: this request's share of the forward passes it rode in
    tokens_in: int
    tokens_out: int
    cost: float
    ended: float = 0.0  # seconds after the request began


@dataclass
class Trace:
    id: str
    method: str = ""
    path: str = ""
    started_at: float = field(default_factory=time.time)
    route: str | None = None  # how the answering expert was chosen
    expert: str | None = None  # the expert that answered
    decisions: list[Decision] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    status: int | None = None
    seconds: float | None = None
    api_key: str | None = None  # which key made the request (its name or a digest prefix)
    client: str | None = None  # whose rate limit it counts against (the key, or an address)
    charges: list[Charge] = field(default_factory=list)
    llm_tokens: tuple[int, int] | None = None  # (read, written) were the LLM to do it alone
    cost: float | None = None
    counterfactual_cost: float | None = None  # the same request on the default LLM alone
    user: str | None = None  # OpenAI's ``user``: the caller's own end-user id
    metadata: dict[str, str] | None = None  # OpenAI's ``metadata``, kept as sent
    prompts: list[str] = field(default_factory=list)  # rendered LLM prompts (log level debug)
    _t0: float = field(default_factory=time.perf_counter, repr=False)

    def decide(
        self,
        stage: str,
        choice: str,
        reason: str,
        *,
        score: float | None = None,
        seconds: float = 0.0,
        scores: dict[str, Any] | None = None,
    ) -> Decision:
        decision = Decision(stage, choice, reason, score, seconds, scores)
        self.decisions.append(decision)
        # also an event on the current OpenTelemetry span (a no-op without a provider)
        otel.get_current_span().add_event(
            f"route.{stage}", {"choice": choice, "reason": reason, "score": score or 0.0}
        )
        return decision

    def answered_by(self, expert: str, route: str) -> None:
        self.expert, self.route = expert, route

    def elapsed(self) -> float:
        return time.perf_counter() - self._t0

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in dataclasses.asdict(self).items() if not k.startswith("_")}
        return data


_current: contextvars.ContextVar[Trace | None] = contextvars.ContextVar(
    "corral_trace", default=None
)


def current_trace() -> Trace:
    """The trace of the request being served; a throwaway one outside a request
    (the CLI, tests calling the router directly) so callers never need to check."""
    trace = _current.get()
    return trace if trace is not None else Trace(id=new_trace_id())


@contextlib.contextmanager
def activate(trace: Trace) -> Iterator[Trace]:
    """Make ``trace`` current for the code (and tasks it starts) inside the block."""
    token = _current.set(trace)
    try:
        yield trace
    finally:
        _current.reset(token)


def active_trace() -> Trace | None:
    """The current request's trace, or None outside a traced request."""
    return _current.get()


def new_trace_id() -> str:
    """128 random bits as W3C trace ids are written. Unique, not secret (a trace is read
    with the API key that made it), so ``random`` as OpenTelemetry's SDK uses, not an
    ``os.urandom`` system call per request."""
    return f"{random.getrandbits(128):032x}"


class TraceStore:
    """The most recent ``capacity`` traces, oldest dropped first (bounded memory)."""

    def __init__(self, capacity: int = 2048) -> None:
        self.capacity = capacity
        self._traces: OrderedDict[str, Trace] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, trace: Trace) -> None:
        with self._lock:
            self._traces[trace.id] = trace
            self._traces.move_to_end(trace.id)
            while len(self._traces) > self.capacity:
                self._traces.popitem(last=False)

    def get(self, trace_id: str) -> Trace | None:
        with self._lock:
            return self._traces.get(trace_id)

    def recent(self, limit: int = 50) -> list[Trace]:
        with self._lock:
            return list(self._traces.values())[-limit:][::-1]
