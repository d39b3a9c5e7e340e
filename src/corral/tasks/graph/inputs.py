"""What a graph expert is asked and what it answers.

``GraphFitInput`` trains and stores a named model; ``GraphPredictInput`` (the expert's
``operation``, so also the coordinator's tool schema) predicts with a stored one. The
fitted model is named in the request (``graph``), not by the expert: any graph expert can
predict with a model another fitted, because the stored manifest says how it was built.

Node ids are strings or integers, one kind per graph; without ``nodes.ids`` they are row
indices. Lists carry ``max_length`` so the tool schema is bounded; the HTTP routes check
the configured (usually tighter) ``server.limits`` before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, StringConstraints

from corral.ownership import OwnedName

__all__ = [
    "GraphFitBody",
    "GraphFitInput",
    "GraphFitResult",
    "GraphPredictBody",
    "GraphPredictInput",
    "LinkScore",
    "NewNodes",
    "NodeId",
    "NodePrediction",
    "NodesIn",
    "Prediction",
]

GraphTask = Literal["node_classification", "link_prediction"]
# integer ids are held as int64: a bigger one is the caller's to fix (422), not a 500
NodeId = (
    Annotated[StrictInt, Field(ge=-(2**63), le=2**63 - 1)]
    | Annotated[str, StringConstraints(min_length=1, max_length=256)]
)
Label = StrictStr | StrictInt
Edge = tuple[NodeId, NodeId]
GraphName = OwnedName

# ceilings for the schema (the tool path); server.limits are checked on HTTP requests
_MAX_NODES = 1_000_000
_MAX_EDGES = 5_000_000
_MAX_QUERY = 10_000


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # finite numbers only


class NodesIn(_Input):
    ids: list[NodeId] | None = Field(
        None,
        max_length=_MAX_NODES,
        description="One id per feature row (all strings or all integers); omitted: the "
        "row indices 0..n-1.",
    )
    features: list[list[float]] = Field(
        max_length=_MAX_NODES, description="One row of numbers per node, all the same width."
    )


class GraphFitBody(_Input):
    """Train a GNN on one graph and store it as a new version (fields shared with HTTP)."""

    task: GraphTask | None = Field(
        None, description="What to learn; omitted: the expert's options.task (node)."
    )
    nodes: NodesIn
    edges: list[Edge] = Field(
        default_factory=list,
        max_length=_MAX_EDGES,
        description="[source, target] pairs of node ids (row indices without nodes.ids); "
        "message passing treats them as undirected.",
    )
    edge_features: list[list[float]] | None = Field(
        None,
        max_length=_MAX_EDGES,
        description="One row per edge (a payment's amount, ...): each node gets the mean "
        "of its edges' rows appended to its own features.",
    )
    labels: dict[str, Label] | None = Field(
        None,
        description="node_classification: node id -> label for the nodes whose labels are "
        "known (a few suffice: the rest are learnt from the graph).",
    )
    epochs: int | None = Field(None, ge=1, le=5000, description="Omitted: options.epochs.")
    held_out: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="Share of labels (node task) or edges (link task) kept out of training "
        "to measure the stored model on; 0: train on everything, report no metrics.",
    )
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Same seed and data: same model.")


class GraphFitInput(GraphFitBody):
    """Train a GNN on one graph and store it as a new version of ``graph``."""

    graph: GraphName


class NewNodes(_Input):
    ids: list[NodeId] = Field(min_length=1, max_length=_MAX_QUERY)
    features: list[list[float]] = Field(
        max_length=_MAX_QUERY, description="Rows as wide as the fitted graph's features."
    )


class GraphPredictBody(_Input):
    """Predict with a fitted graph model (fields shared with HTTP)."""

    version: int | None = Field(None, ge=1, description="Omitted: the newest version.")
    nodes: list[NodeId] | None = Field(
        None, max_length=_MAX_QUERY, description="node_classification: ids to label."
    )
    new_nodes: NewNodes | None = Field(
        None,
        description="Nodes not in the fitted graph, joined to it with their new_edges "
        "(inductive, no refit): node_classification labels them too; link_prediction "
        "lets pairs, node and candidates name them.",
    )
    new_edges: list[Edge] | None = Field(
        None,
        max_length=_MAX_QUERY,
        description="Edges of new_nodes, to stored nodes or to each other.",
    )
    new_edge_features: list[list[float]] | None = Field(
        None,
        max_length=_MAX_QUERY,
        description="One row per new edge; required when the graph was fitted with them.",
    )
    pairs: list[Edge] | None = Field(
        None, max_length=_MAX_QUERY, description="link_prediction: [u, v] pairs to score."
    )
    node: NodeId | None = Field(
        None, description="link_prediction: recommend new links for this node."
    )
    top_k: int = Field(10, ge=1, le=1000, description="How many links to recommend.")
    candidates: list[NodeId] | None = Field(
        None,
        max_length=_MAX_NODES,
        description="Nodes the recommendation may pick from; omitted: every node.",
    )


class GraphPredictInput(GraphPredictBody):
    """Predict with a fitted graph model: node labels, link scores or top-k new links."""

    graph: GraphName


@dataclass(frozen=True)
class GraphFitResult:
    graph: str
    version: int
    task: GraphTask
    architecture: str
    nodes: int
    edges: int
    features: int
    classes: list[Label] | None
    held_out: int  # labels (node task) or edges (link task) measured on
    metrics: dict[str, float]
    epochs: int
    fit_seconds: float


@dataclass(frozen=True)
class NodePrediction:
    id: NodeId
    label: Label
    probabilities: dict[str, float]  # keyed by str(label)


@dataclass(frozen=True)
class LinkScore:
    source: NodeId
    target: NodeId
    score: float  # probability that the link exists


@dataclass(frozen=True)
class Prediction:
    graph: str
    version: int
    task: GraphTask
    nodes: list[NodePrediction] = field(default_factory=list)
    links: list[LinkScore] = field(default_factory=list)
