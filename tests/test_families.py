"""The task families are the one list everything reads: each backend resolves to an expert
of its task with typed options, each family's routes are mounted, and the registry, the
catalog's defaults, `corral check`'s library probe and the coordinator's tools agree with
the descriptors."""

from __future__ import annotations

import importlib
import importlib.util

import pytest
from fastapi import APIRouter

from corral import create_app, default_config
from corral.availability import backend_libraries
from corral.catalog import _DEFAULT_BACKEND
from corral.config import Task
from corral.experts.base import BaseExpert
from corral.experts.options import Options
from corral.experts.registry import REGISTRY, expert_class
from corral.tasks import BACKENDS, FAMILIES, TOOL_TASKS

_ALL = [b for family in FAMILIES for b in family.backends]


def test_every_task_has_exactly_one_family() -> None:
    owners = [task for family in FAMILIES for task in family.tasks]
    assert sorted(owners) == sorted(Task), "a task missing from FAMILIES, or in two"
    assert len({f.name for f in FAMILIES}) == len(FAMILIES)


@pytest.mark.parametrize("backend", _ALL, ids=lambda b: f"{b.task.value}/{b.name}")
def test_each_backend_is_an_expert_of_its_task_with_typed_options(backend) -> None:
    missing = [m for m in backend.libraries if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{backend.name} needs {missing} (corral[{backend.extra}])")
    cls = expert_class(backend.task, backend.name)
    assert issubclass(cls, BaseExpert) and cls.task == backend.task
    assert cls.options_model is not None and issubclass(cls.options_model, Options)
    assert backend.extra, "name the extra that installs the backend's libraries"


def test_the_tables_are_read_from_the_families() -> None:
    assert dict(REGISTRY) == {key: b.expert for key, b in BACKENDS.items()}
    assert dict(backend_libraries()) == {
        b.name: (b.libraries, b.extra) for b in _ALL
    }
    for family in FAMILIES:
        for task, name in family.defaults.items():
            assert (task, name) in BACKENDS and _DEFAULT_BACKEND[task] == name
    assert Task.CHAT not in TOOL_TASKS and Task.EMBED not in TOOL_TASKS  # not tools for an LLM


def test_every_familys_routes_are_mounted() -> None:
    mounted = set(create_app(default_config()).openapi()["paths"])
    for family in FAMILIES:
        assert family.routes, f"family {family.name} serves no routes"
        for module in family.routes:
            router = importlib.import_module(module).api
            assert isinstance(router, APIRouter)
            paths = {r.path for r in router.routes if getattr(r, "include_in_schema", True)}
            assert paths and paths <= mounted, (module, paths - mounted)
