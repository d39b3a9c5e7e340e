"""Answering from a fitted graph model: node labels, link scores and top-k new links.

Split from ``graph.py`` (which fits, stores and caches models) along the line between
building a model and using one: everything here reads a ``Loaded`` version and the
request, and writes nothing. New nodes (``new_nodes`` with their ``new_edges``) are
joined to the stored graph and the network runs over the whole of it, so both tasks
answer for them inductively, without a refit: a new account is labelled, and a new user
gets link scores and recommendations from its features and its first links. GraphSAGE
is made for this (its weights apply to any neighbourhood); GCN runs the same way, but
its normalisation was learnt on the stored graph's degrees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from corral.artifacts import ArtifactInfo
from corral.errors import InvalidRequest
from corral.tasks.graph._data import IdMap, check_rows, edge_rows, node_inputs, resolve_edges
from corral.tasks.graph.inputs import GraphPredictInput, LinkScore, NodePrediction, Prediction

__all__ = ["Loaded", "Predictor"]


@dataclass
class Loaded:
    """A stored version, ready to predict: its network, graph and (once computed) the
    network's output for the stored graph, which answers every stored-node query."""

    info: ArtifactInfo
    net: Any  # GraphNet
    ids: IdMap
    features: np.ndarray
    edges: np.ndarray
    edge_features: np.ndarray | None
    mean: np.ndarray
    std: np.ndarray
    output: np.ndarray | None = field(default=None)

    @property
    def meta(self) -> dict[str, Any]:
        return self.info.meta


@dataclass(frozen=True)
class _Graph:
    """The graph a prediction runs on: the stored one, plus the request's new nodes."""

    ids: IdMap
    output: np.ndarray  # class probabilities (node task) or embeddings (link task)
    edges: np.ndarray
    new_rows: np.ndarray  # rows of the new nodes, in request order


class Predictor:
    """Predictions from loaded models, on the device the expert's networks live on."""

    def __init__(self, nets: Any, device: str) -> None:
        self.nets = nets  # corral.tasks.graph._nets (imported once torch_geometric is)
        self.device = device

    def predict(self, loaded: Loaded, request: GraphPredictInput) -> Prediction:
        if loaded.meta["task"] == "node_classification":
            return self._nodes(loaded, request)
        return self._links(loaded, request)

    # --- the network's output -------------------------------------------------------
    def _output(
        self,
        loaded: Loaded,
        features: np.ndarray,
        edges: np.ndarray,
        edge_features: np.ndarray | None,
    ) -> np.ndarray:
        import torch

        inputs = node_inputs(features, edges, edge_features, degree=loaded.meta["degree_features"])
        with np.errstate(all="ignore"):
            scaled = np.float32((inputs - loaded.mean) / loaded.std)
            out = self.nets.run(
                loaded.net,
                torch.as_tensor(scaled, device=self.device),
                self.nets.edge_index(edges, self.device),
            )
            result = self.nets.softmax(out) if loaded.meta["task"] == "node_classification" else out
        if not np.isfinite(result).all():
            raise InvalidRequest(
                "new_nodes.features (or new_edge_features) are too far outside the fitted "
                "graph's range for the model; rescale them as the fit's were",
                param="new_nodes.features",
            )
        return result

    def _graph(self, loaded: Loaded, request: GraphPredictInput) -> _Graph:
        """The stored graph's output (computed once per loaded version), or the output of
        the stored graph joined with the request's new nodes and edges."""
        if request.new_nodes is None:
            if loaded.output is None:
                loaded.output = self._output(
                    loaded, loaded.features, loaded.edges, loaded.edge_features
                )
            return _Graph(loaded.ids, loaded.output, loaded.edges, np.empty(0, np.int64))
        new = request.new_nodes
        features = check_rows(new.features, "new_nodes.features", width=loaded.features.shape[1])
        if len(new.ids) != len(features):
            raise InvalidRequest(
                f"new_nodes.ids has {len(new.ids)} ids for {len(features)} feature rows",
                param="new_nodes.ids",
            )
        ids = loaded.ids.extended(new.ids, "new_nodes.ids")
        added = resolve_edges(request.new_edges or [], ids, "new_edges")
        edges = np.concatenate([loaded.edges, added])
        output = self._output(
            loaded,
            np.concatenate([loaded.features, features]),
            edges,
            _edge_features(loaded, request, len(added)),
        )
        return _Graph(ids, output, edges, np.arange(len(loaded.features), len(ids.ids)))

    # --- the two tasks --------------------------------------------------------------
    def _nodes(self, loaded: Loaded, request: GraphPredictInput) -> Prediction:
        _only(request, loaded, ("pairs", "node", "candidates"))
        _new_edges_need_nodes(request)
        if not request.nodes and request.new_nodes is None:
            raise InvalidRequest("give nodes (stored ids) or new_nodes to label", param="nodes")
        graph = self._graph(loaded, request)
        ids, probabilities = graph.ids, graph.output
        rows = np.concatenate([ids.rows_of(request.nodes or [], "nodes"), graph.new_rows])
        classes = loaded.meta["classes"]
        return Prediction(
            graph=loaded.info.name,
            version=loaded.info.version,
            task="node_classification",
            nodes=[
                NodePrediction(
                    id=ids.ids[r],
                    label=classes[int(np.argmax(probabilities[r]))],
                    probabilities={
                        str(c): float(p) for c, p in zip(classes, probabilities[r], strict=True)
                    },
                )
                for r in rows.tolist()
            ],
        )

    def _links(self, loaded: Loaded, request: GraphPredictInput) -> Prediction:
        _only(request, loaded, ("nodes",))
        _new_edges_need_nodes(request)
        if (request.pairs is None) == (request.node is None):
            raise InvalidRequest(
                "give pairs to score or a node to recommend for (one of them)", param="pairs"
            )
        graph = self._graph(loaded, request)
        z, ids = graph.output, graph.ids
        if request.pairs is not None:
            pairs = resolve_edges(request.pairs, ids, "pairs")
            scores = self.nets.sigmoid(np.sum(z[pairs[:, 0]] * z[pairs[:, 1]], axis=1))
            links = [
                LinkScore(ids.ids[a], ids.ids[b], float(s))
                for (a, b), s in zip(pairs.tolist(), scores, strict=True)
            ]
        else:
            assert request.node is not None
            row = ids.row(request.node, "node")
            pool = (
                np.unique(ids.rows_of(request.candidates, "candidates"))
                if request.candidates is not None
                else np.arange(len(ids.ids))
            )
            edges = graph.edges  # a new node's new_edges are links it has already
            linked = np.concatenate(
                [edges[edges[:, 0] == row, 1], edges[edges[:, 1] == row, 0], [row]]
            )
            pool = pool[~np.isin(pool, linked)]
            scores = self.nets.sigmoid(z[pool] @ z[row])
            best = np.argsort(-scores, kind="stable")[: request.top_k]
            links = [LinkScore(ids.ids[row], ids.ids[pool[i]], float(scores[i])) for i in best]
        return Prediction(
            graph=loaded.info.name,
            version=loaded.info.version,
            task="link_prediction",
            links=links,
        )


def _edge_features(loaded: Loaded, request: GraphPredictInput, added: int) -> np.ndarray | None:
    """The stored edges' rows plus the new edges' (required when the fit had them)."""
    if loaded.edge_features is None:
        if request.new_edge_features is not None:
            raise InvalidRequest(
                f"graph {loaded.info.name!r} was fitted without edge_features",
                param="new_edge_features",
            )
        return None
    rows = edge_rows(request.new_edge_features, added, "new_edge_features")
    if rows is None and added:
        raise InvalidRequest(
            f"graph {loaded.info.name!r} was fitted with edge_features: give "
            "new_edge_features, one row per new edge",
            param="new_edge_features",
        )
    width = loaded.edge_features.shape[1]
    if rows is not None and rows.shape[1] != width:
        raise InvalidRequest(
            f"new_edge_features rows have {rows.shape[1]} values; the graph was "
            f"fitted with {width}",
            param="new_edge_features[0]",
        )
    return loaded.edge_features if rows is None else np.concatenate([loaded.edge_features, rows])


def _new_edges_need_nodes(request: GraphPredictInput) -> None:
    if request.new_nodes is None and (request.new_edges or request.new_edge_features):
        raise InvalidRequest("new_edges need the new_nodes they touch", param="new_edges")


def _only(request: GraphPredictInput, loaded: Loaded, fields: tuple[str, ...]) -> None:
    """422 for a field the stored model's task does not use."""
    for name in fields:
        if getattr(request, name) is not None:
            raise InvalidRequest(
                f"{name} does not apply: graph {loaded.info.name!r} is a "
                f"{loaded.meta['task']} model",
                param=name,
            )
