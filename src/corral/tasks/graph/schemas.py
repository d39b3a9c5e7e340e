"""HTTP bodies of ``/v1/graph``: the URL names the fitted model, ``model`` the expert.

Requests are the expert's own input fields (``corral.tasks.graph.inputs``) plus
``model``: the config expert (GraphSAGE or GCN) to fit with, or to predict with
(omitted: the task default for a fit, the expert that fitted it for a prediction).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, StrictInt, StrictStr

from corral.tasks.graph.inputs import GraphFitBody, GraphPredictBody

__all__ = [
    "GraphDeleteResponse",
    "GraphFitRequest",
    "GraphFitResponse",
    "GraphLinkOut",
    "GraphListResponse",
    "GraphModelInfo",
    "GraphNodeOut",
    "GraphPredictRequest",
    "GraphPredictResponse",
]

NodeId = StrictInt | StrictStr
Label = StrictStr | StrictInt


class GraphFitRequest(GraphFitBody):
    model: str | None = Field(
        None, description="Graph expert to fit with (architecture, hidden size); omitted: default."
    )
    timeout_s: float | None = Field(
        None,
        gt=0,
        le=86_400,
        description="Seconds this request may take; then a 504 and its work stops.",
    )


class GraphPredictRequest(GraphPredictBody):
    model: str | None = Field(
        None, description="Graph expert to run it on; omitted: the expert that fitted it."
    )


class GraphFitResponse(BaseModel):
    object: Literal["graph.model"] = "graph.model"
    name: str
    version: int
    task: str
    expert: str
    architecture: str
    nodes: int
    edges: int
    features: int = Field(description="Feature columns per node.")
    classes: list[Label] | None = Field(description="node_classification: the label names.")
    held_out: int = Field(description="Labels (node task) or edges (link task) measured on.")
    metrics: dict[str, float] = Field(
        description="On the held-out share: accuracy, macro_f1 (and auc with two classes) "
        "for nodes; auc of held-out edges against as many non-edges for links."
    )
    epochs: int
    fit_seconds: float


class GraphNodeOut(BaseModel):
    id: NodeId
    label: Label
    probabilities: dict[str, float] = Field(description="Per label (keyed by its string form).")


class GraphLinkOut(BaseModel):
    source: NodeId
    target: NodeId
    score: float = Field(description="Probability of the link, in (0, 1).")


class GraphPredictResponse(BaseModel):
    object: Literal["list"] = "list"
    name: str
    version: int
    task: str
    expert: str
    data: list[GraphNodeOut] | list[GraphLinkOut] = Field(
        description="Labelled nodes (nodes, then new_nodes), or scored links (pairs in "
        "order; for top_k, best first)."
    )


class GraphModelInfo(BaseModel):
    object: Literal["graph.model"] = "graph.model"
    name: str
    owner: str | None = Field(None, description="The API key that fitted it (with keys).")
    version: int = Field(description="The newest version.")
    versions: list[int]
    created: float = Field(description="Unix seconds the newest version was stored.")
    task: str
    expert: str
    architecture: str
    nodes: int
    edges: int
    features: int
    classes: list[Label] | None
    metrics: dict[str, float]

    @classmethod
    def of(
        cls,
        versions: list[int],
        created: float,
        meta: dict[str, Any],
        name: str,
        owner: str | None = None,
    ) -> GraphModelInfo:
        return cls(
            name=name,
            owner=owner,
            version=max(versions),
            versions=versions,
            created=created,
            **{k: meta[k] for k in ("task", "expert", "architecture", "nodes", "edges")},
            features=meta["features"],
            classes=meta["classes"],
            metrics=meta["metrics"],
        )


class GraphListResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[GraphModelInfo]


class GraphDeleteResponse(BaseModel):
    object: Literal["graph.model.deleted"] = "graph.model.deleted"
    name: str
    deleted: int = Field(description="How many versions were deleted.")
