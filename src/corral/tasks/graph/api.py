"""``/v1/graph``: fit GNNs on graphs the client sends, predict with them, list, delete.

``POST /v1/graph/{name}/fit`` and ``/predict`` go through the router like every task
(metrics, traces, cost, fallbacks); training and prediction run on the expert's worker
thread. Listing and deleting read the artifact store directly: no model is involved.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence

from fastapi import APIRouter

from corral.artifacts import NAME_PATTERN, ArtifactInfo
from corral.config import LimitsConfig, Task
from corral.errors import InvalidRequest, PayloadTooLarge
from corral.fitted import FittedRoutes, Owner
from corral.ownership import qualify
from corral.routing import Router
from corral.runtime.cancel import deadline
from corral.server.deps import RouterDep
from corral.server.fit_memory import check_fit_memory, graph_fit_bytes
from corral.server.schemas import ERROR_RESPONSES
from corral.tasks.graph.expert import KIND
from corral.tasks.graph.inputs import (
    GraphFitInput,
    GraphFitResult,
    GraphPredictInput,
    Prediction,
)
from corral.tasks.graph.schemas import (
    GraphDeleteResponse,
    GraphFitRequest,
    GraphFitResponse,
    GraphLinkOut,
    GraphListResponse,
    GraphModelInfo,
    GraphNodeOut,
    GraphPredictRequest,
    GraphPredictResponse,
)

api = APIRouter(prefix="/v1/graph", tags=["graph"], responses=ERROR_RESPONSES)
_NAME = re.compile(NAME_PATTERN)


def _ref(name: str, owner: str | None) -> str:
    _check_name(name)
    return qualify(name, owner, what="graph models")


@api.post("/{name}/fit", response_model=GraphFitResponse)
async def fit(
    name: str, body: GraphFitRequest, router: RouterDep, owner: Owner = None
) -> GraphFitResponse:
    """Train a GNN on the graph in the body and store it as a new version of ``name``."""
    ref = _ref(name, owner)
    _check_fit(body, router.runtime.config.server.limits)
    _check_fit_memory(body, router)
    fields = {k: getattr(body, k) for k in GraphFitInput.model_fields if k != "graph"}
    request = GraphFitInput.model_construct(graph=ref, **fields)  # validated as the body
    with deadline(body.timeout_s):
        handle, result = await router.serve(Task.GRAPH, body.model, request)
    assert isinstance(result, GraphFitResult)
    return GraphFitResponse(
        name=name,
        version=result.version,
        task=result.task,
        expert=handle.name,
        architecture=result.architecture,
        nodes=result.nodes,
        edges=result.edges,
        features=result.features,
        classes=result.classes,
        held_out=result.held_out,
        metrics=result.metrics,
        epochs=result.epochs,
        fit_seconds=result.fit_seconds,
    )


@api.post("/{name}/predict", response_model=GraphPredictResponse)
async def predict(
    name: str, body: GraphPredictRequest, router: RouterDep, owner: Owner = None
) -> GraphPredictResponse:
    """Label nodes (stored or new), score pairs, or recommend links with model ``name``."""
    ref = _ref(name, owner)
    _check_predict(body, router.runtime.config.server.limits)
    model = body.model or await _fitted_by(router, ref, body.version)
    fields = {k: getattr(body, k) for k in GraphPredictInput.model_fields if k != "graph"}
    request = GraphPredictInput.model_construct(graph=ref, **fields)
    handle, result = await router.serve(Task.GRAPH, model, request)
    assert isinstance(result, Prediction)
    data: list[GraphNodeOut] | list[GraphLinkOut]
    if result.task == "node_classification":
        data = [
            GraphNodeOut(id=n.id, label=n.label, probabilities=n.probabilities)
            for n in result.nodes
        ]
    else:
        data = [GraphLinkOut(source=s.source, target=s.target, score=s.score) for s in result.links]
    return GraphPredictResponse(
        name=name, version=result.version, task=result.task, expert=handle.name, data=data
    )


def _described(infos: list[ArtifactInfo]) -> GraphModelInfo:
    newest = infos[-1]
    versions = [i.version for i in infos]
    return GraphModelInfo.of(versions, newest.created, newest.meta, newest.name, newest.owner)


FittedRoutes(
    kind=KIND,
    what="graph models",
    info=GraphModelInfo,
    describe=_described,
    listing=GraphListResponse,
    deleted=GraphDeleteResponse,
).mount(api)


async def _fitted_by(router: Router, name: str, version: int | None) -> str | None:
    """The expert that fitted the stored version, when this config still has it (404
    at once for a model never fitted)."""
    info = await asyncio.to_thread(router.runtime.artifacts.info, KIND, name, version)
    expert = info.meta.get("expert")
    spec = router.runtime.config.model_named(expert) if isinstance(expert, str) else None
    return (
        spec.name
        if spec is not None and router.runtime.handles[spec.name].task == Task.GRAPH
        else None
    )


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise InvalidRequest(
            f"graph model name {name!r} is not allowed: letters, digits, '.', '_' and '-', "
            "starting with a letter or digit, at most 64 characters",
            param="name",
        )


def _too_many(count: int, limit: int, what: str, param: str) -> None:
    if count > limit:
        raise PayloadTooLarge(
            f"{param} has {count} {what}; server.limits.max_graph_{what} is {limit}", param=param
        )


def _check_width(rows: Sequence[Sequence[float]] | None, limits: LimitsConfig, param: str) -> None:
    if rows and len(rows[0]) > limits.max_graph_features:
        raise PayloadTooLarge(
            f"{param}[0] has {len(rows[0])} values; server.limits.max_graph_features is "
            f"{limits.max_graph_features}",
            param=f"{param}[0]",
        )


def _check_fit(body: GraphFitRequest, limits: LimitsConfig) -> None:
    """413 naming the limit: training grows with nodes x features and with edges."""
    _too_many(len(body.nodes.features), limits.max_graph_nodes, "nodes", "nodes.features")
    _too_many(len(body.edges), limits.max_graph_edges, "edges", "edges")
    _check_width(body.nodes.features, limits, "nodes.features")
    _check_width(body.edge_features, limits, "edge_features")


def _check_fit_memory(body: GraphFitRequest, router: Router) -> None:
    """413 naming server.limits.max_fit_bytes when training would not fit (the expert's
    hidden size and layers count; 403 first if the key may not use it)."""
    options = router.runtime.find(Task.GRAPH, body.model).spec.options
    features = body.nodes.features
    estimate = graph_fit_bytes(
        nodes=len(features),
        features=len(features[0]) if features else 0,
        edges=len(body.edges),
        hidden=_int_option(options, "hidden", 64),
        layers=_int_option(options, "layers", 2),
    )
    check_fit_memory(estimate, "this fit", router.runtime.config.server.limits, "nodes")


def _int_option(options: dict[str, object], name: str, default: int) -> int:
    value = options.get(name, default)
    return value if isinstance(value, int) else default


def _check_predict(body: GraphPredictRequest, limits: LimitsConfig) -> None:
    new = body.new_nodes.ids if body.new_nodes is not None else []
    _too_many(len(body.nodes or []) + len(new), limits.max_graph_nodes, "nodes", "nodes")
    _too_many(len(body.candidates or []), limits.max_graph_nodes, "nodes", "candidates")
    _too_many(len(body.new_edges or []), limits.max_graph_edges, "edges", "new_edges")
    _too_many(len(body.pairs or []), limits.max_graph_edges, "edges", "pairs")
    if body.new_nodes is not None:
        _check_width(body.new_nodes.features, limits, "new_nodes.features")
    _check_width(body.new_edge_features, limits, "new_edge_features")
