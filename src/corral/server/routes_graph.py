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

from corral.artifacts import NAME_PATTERN
from corral.config import LimitsConfig, Task
from corral.errors import InvalidRequest, PayloadTooLarge
from corral.experts.graph import KIND
from corral.experts.graph_inputs import (
    GraphFitInput,
    GraphFitResult,
    GraphPredictInput,
    Prediction,
)
from corral.routing import Router
from corral.runtime.cancel import deadline
from corral.server.deps import RouterDep, RuntimeDep
from corral.server.schemas import ERROR_RESPONSES
from corral.server.schemas_graph import (
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


@api.post("/{name}/fit", response_model=GraphFitResponse)
async def fit(name: str, body: GraphFitRequest, router: RouterDep) -> GraphFitResponse:
    """Train a GNN on the graph in the body and store it as a new version of ``name``."""
    _check_name(name)
    _check_fit(body, router.runtime.config.server.limits)
    fields = {k: getattr(body, k) for k in GraphFitInput.model_fields if k != "graph"}
    request = GraphFitInput.model_construct(graph=name, **fields)  # validated as the body
    with deadline(body.timeout_s):
        handle, result = await router.serve(Task.GRAPH, body.model, request)
    assert isinstance(result, GraphFitResult)
    return GraphFitResponse(
        name=result.graph,
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
async def predict(name: str, body: GraphPredictRequest, router: RouterDep) -> GraphPredictResponse:
    """Label nodes (stored or new), score pairs, or recommend links with model ``name``."""
    _check_name(name)
    _check_predict(body, router.runtime.config.server.limits)
    model = body.model or await _fitted_by(router, name, body.version)
    fields = {k: getattr(body, k) for k in GraphPredictInput.model_fields if k != "graph"}
    request = GraphPredictInput.model_construct(graph=name, **fields)
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
        name=result.graph, version=result.version, task=result.task, expert=handle.name, data=data
    )


@api.get("", response_model=GraphListResponse)
async def list_models(runtime: RuntimeDep) -> GraphListResponse:
    """Every stored graph model: its newest version's details and all its versions."""
    infos = await asyncio.to_thread(runtime.artifacts.list, KIND)
    newest = {info.name: info for info in infos}  # listed by name, then version
    return GraphListResponse(
        data=[
            GraphModelInfo.of(
                [i.version for i in infos if i.name == name], info.created, info.meta, name
            )
            for name, info in newest.items()
        ]
    )


@api.get("/{name}", response_model=GraphModelInfo)
async def describe(name: str, runtime: RuntimeDep) -> GraphModelInfo:
    _check_name(name)
    infos = [i for i in await asyncio.to_thread(runtime.artifacts.list, KIND) if i.name == name]
    if not infos:
        runtime.artifacts.info(KIND, name)  # raises the 404 that names it
    return GraphModelInfo.of([i.version for i in infos], infos[-1].created, infos[-1].meta, name)


@api.delete("/{name}", response_model=GraphDeleteResponse)
async def delete(name: str, runtime: RuntimeDep, version: int | None = None) -> GraphDeleteResponse:
    """Delete one version (``?version=``) or all versions of ``name``."""
    _check_name(name)
    deleted = await asyncio.to_thread(runtime.artifacts.delete, KIND, name, version)
    return GraphDeleteResponse(name=name, deleted=deleted)


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


def _check_predict(body: GraphPredictRequest, limits: LimitsConfig) -> None:
    new = body.new_nodes.ids if body.new_nodes is not None else []
    _too_many(len(body.nodes or []) + len(new), limits.max_graph_nodes, "nodes", "nodes")
    _too_many(len(body.candidates or []), limits.max_graph_nodes, "nodes", "candidates")
    _too_many(len(body.new_edges or []), limits.max_graph_edges, "edges", "new_edges")
    _too_many(len(body.pairs or []), limits.max_graph_edges, "edges", "pairs")
    if body.new_nodes is not None:
        _check_width(body.new_nodes.features, limits, "new_nodes.features")
    _check_width(body.new_edge_features, limits, "new_edge_features")
