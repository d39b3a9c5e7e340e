"""A task family described as data: its backends, its routes, what the coordinator may call.

Everything that used to be a table per concern (the registry, the catalog's default
backends, the libraries ``corral check`` looks for, the app's routes, the coordinator's
tools, what an LLM would write in their place) is read from these descriptors, so adding
a family is a folder and one line in ``corral.tasks.FAMILIES``. Nothing here imports a
backend: ``expert`` and ``routes`` are import paths, resolved when an expert of that kind
loads or the app is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from corral.config import Task

__all__ = ["Backend", "TaskFamily"]


@dataclass(frozen=True)
class Backend:
    """One way to serve a task: the expert class and what it needs installed."""

    task: Task
    name: str  # the config's ``backend:``
    expert: str  # "module:Class"
    libraries: tuple[str, ...] = ()  # imported by the expert; `corral check` tries them
    extra: str = ""  # the corral extra that installs them
    weightless: bool = False  # fitted over HTTP or statistical: no weights to download


@dataclass(frozen=True)
class TaskFamily:
    """The tasks one package serves, and how."""

    name: str
    backends: tuple[Backend, ...]
    # backend used when a model names its task but its id says nothing about the backend
    defaults: Mapping[Task, str] = field(default_factory=dict)
    routes: tuple[str, ...] = ()  # modules whose ``api`` (an APIRouter) the app mounts
    tools: frozenset[Task] = frozenset()  # tasks the coordinator offers an LLM as tools
    # what an LLM would write doing the task, per item, for the cost comparison: tokens (a
    # label, a score), or a share of the item's own tokens (entities echoed back)
    answer_tokens: Mapping[Task, float] = field(default_factory=dict)
    answer_share: Mapping[Task, float] = field(default_factory=dict)

    @property
    def tasks(self) -> frozenset[Task]:
        return frozenset(b.task for b in self.backends)
