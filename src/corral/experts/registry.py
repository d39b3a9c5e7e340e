"""``(task, backend) -> expert class``, imported lazily so optional backends stay optional."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from corral.config import Task
from corral.errors import ExpertUnavailable
from corral.experts.base import BaseExpert
from corral.tasks import BACKENDS

__all__ = ["REGISTRY", "expert_class"]


class _Registry(Mapping[tuple[Task, str], str]):
    """``(task, backend) -> "module:Class"``, read from the families' backends as they are
    now (``register_family`` adds to them): nothing heavy is imported until an expert of
    that kind loads."""

    def __getitem__(self, key: tuple[Task, str]) -> str:
        return BACKENDS[key].expert

    def __iter__(self) -> Iterator[tuple[Task, str]]:
        return iter(list(BACKENDS))

    def __len__(self) -> int:
        return len(BACKENDS)


REGISTRY: Mapping[tuple[Task, str], str] = _Registry()


def expert_class(task: Task, backend: str) -> type[BaseExpert]:
    """The class serving ``(task, backend)``; ExpertUnavailable when corral has none yet."""
    target = REGISTRY.get((task, backend))
    if target is None:
        known = sorted(b for t, b in REGISTRY if t == task)
        available = (
            f"available for {task.value}: {', '.join(known)}"
            if known
            else (f"no {task.value} backend is implemented in this version of corral")
        )
        raise ExpertUnavailable(
            f"backend {backend!r} cannot serve task {task.value!r}; {available}"
        )
    module, _, name = target.partition(":")
    cls: type[BaseExpert] = getattr(importlib.import_module(module), name)
    return cls
