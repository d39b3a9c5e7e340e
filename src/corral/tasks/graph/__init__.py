"""Graph neural networks (torch-geometric) fitted over HTTP: node labels and link prediction."""

from __future__ import annotations

from corral.config import Task
from corral.tasks.family import Backend, TaskFamily

FAMILY = TaskFamily(
    name="graph",
    backends=(
        Backend(
            Task.GRAPH,
            "torch-geometric",
            "corral.tasks.graph.expert:GraphExpert",
            ("torch", "torch_geometric"),
            "graph",
            weightless=True,
        ),
    ),
    routes=("corral.tasks.graph.api",),
    tools=frozenset({Task.GRAPH}),
)
