"""Task families, one package each: backends, request bodies and routes together.

``FAMILIES`` is the one list the registry, the catalog's defaults, ``corral check``, the
app's routes and the coordinator's tool set read (see ``family.py``). ``register_family``
adds one from outside corral (another package's backends for corral's tasks, or a test's
fakes) to the tables read per request: the registry, the libraries ``corral check``
probes, the coordinator's tools and the routes of apps built after it. The catalog's
default backends and the cost comparison's token counts stay the built-in families'.
"""

from __future__ import annotations

from corral.config import Task
from corral.tasks.anomaly import FAMILY as ANOMALY
from corral.tasks.chat import FAMILY as CHAT
from corral.tasks.detect import FAMILY as DETECT
from corral.tasks.documents import FAMILY as DOCUMENTS
from corral.tasks.family import Backend, TaskFamily
from corral.tasks.forecast import FAMILY as FORECAST
from corral.tasks.graph import FAMILY as GRAPH
from corral.tasks.text import FAMILY as TEXT

__all__ = [
    "BACKENDS",
    "FAMILIES",
    "TOOL_TASKS",
    "Backend",
    "TaskFamily",
    "register_family",
    "unregister_family",
]

BUILT_IN: tuple[TaskFamily, ...] = (TEXT, CHAT, FORECAST, ANOMALY, GRAPH, DOCUMENTS, DETECT)
FAMILIES: list[TaskFamily] = list(BUILT_IN)

BACKENDS: dict[tuple[Task, str], Backend] = {
    (b.task, b.name): b for family in FAMILIES for b in family.backends
}
TOOL_TASKS: set[Task] = set().union(*(f.tools for f in FAMILIES))


def register_family(family: TaskFamily) -> None:
    """Serve ``family``'s backends (and mount its routes in apps built from now on). A
    backend name already taken for its task is a ValueError: nothing is replaced."""
    taken = [f"{b.task.value}/{b.name}" for b in family.backends if (b.task, b.name) in BACKENDS]
    if taken or any(f.name == family.name for f in FAMILIES):
        raise ValueError(f"family {family.name!r}: already registered: {taken or family.name}")
    FAMILIES.append(family)
    BACKENDS.update({(b.task, b.name): b for b in family.backends})
    TOOL_TASKS.update(family.tools)


def unregister_family(name: str) -> None:
    """Undo ``register_family`` for a family that is not built in."""
    family = next(f for f in FAMILIES if f.name == name)
    if family in BUILT_IN:
        raise ValueError(f"{name!r} is built in")
    FAMILIES.remove(family)
    for b in family.backends:
        del BACKENDS[(b.task, b.name)]
    TOOL_TASKS.clear()
    TOOL_TASKS.update(*(f.tools for f in FAMILIES))
