"""Task families, one package each: backends, request bodies and routes together.

``FAMILIES`` is the one list the registry, the catalog's defaults, ``corral check``, the
app's routes and the coordinator's tool set read (see ``family.py``).
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

__all__ = ["BACKENDS", "FAMILIES", "TOOL_TASKS", "Backend", "TaskFamily"]

FAMILIES: tuple[TaskFamily, ...] = (TEXT, CHAT, FORECAST, ANOMALY, GRAPH, DOCUMENTS, DETECT)

BACKENDS: dict[tuple[Task, str], Backend] = {
    (b.task, b.name): b for family in FAMILIES for b in family.backends
}
TOOL_TASKS: frozenset[Task] = frozenset().union(*(f.tools for f in FAMILIES))
