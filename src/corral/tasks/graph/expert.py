"""Graph neural networks (torch-geometric): node classification and link prediction on
graphs the client sends, fitted over HTTP and kept as numbered versions on disk.

Why a GNN: in a payment graph a fraud ring's accounts look like anyone's on their own;
what gives them away is whom they pay. GraphSAGE (``sage``, inductive: new nodes are
labelled from their features and edges without refitting) and GCN (``gcn``) read each
node's neighbourhood.

* A fit (``GraphFitInput``) trains on the whole graph (semi-supervised: a few labels
  suffice), measures the model on a held-out share of labels or edges, and stores the
  weights, the graph and its id map through the artifact store (npz + JSON, no pickle).
* A prediction (``GraphPredictInput``) loads the stored version (cached, a bounded LRU)
  and hands it to ``_graph_predict.Predictor``, which labels nodes, scores pairs, or
  recommends the top-k links a node lacks, for stored or new nodes. This module builds,
  stores and restores models; that one only reads them.

Both run in ``forward``, on the expert's worker thread: validation of a large edge list
and training are both too slow for the event loop. A bad request becomes its own 4xx in
``finish``; the other requests of the batch still answer.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

import numpy as np

from corral.artifacts import ArtifactInfo
from corral.config import Task
from corral.errors import InvalidRequest, RequestError
from corral.experts._torch import torch_threads
from corral.experts.base import require
from corral.experts.fitted import FittedExpert, FittedModels
from corral.experts.operation import Operation
from corral.experts.options import GraphOptions
from corral.runtime.cancel import checkpoint
from corral.tasks.graph._data import (
    IdMap,
    check_rows,
    edge_rows,
    id_map,
    node_inputs,
    non_edges,
    resolve_edges,
    resolve_labels,
)
from corral.tasks.graph._predict import Loaded, Predictor
from corral.tasks.graph.inputs import (
    GraphFitInput,
    GraphFitResult,
    GraphPredictInput,
    GraphTask,
    Prediction,
)

__all__ = ["GRAPH_FIT", "GRAPH_PREDICT", "KIND", "GraphExpert"]

KIND = "graph"  # the artifact store's folder for fitted graph models
GraphRequest = GraphFitInput | GraphPredictInput
_Output = GraphFitResult | Prediction | RequestError

_TASKS: dict[str, GraphTask] = {
    "node": "node_classification",
    "link": "link_prediction",
    "node_classification": "node_classification",
    "link_prediction": "link_prediction",
}
_OPTIONS = {
    "architecture",
    "hidden",
    "layers",
    "dropout",
    "epochs",
    "lr",
    "weight_decay",
    "task",
    "degree_features",
    "cache",
    "threads",
}


GRAPH_PREDICT = Operation(Task.GRAPH, GraphPredictInput, Prediction)
GRAPH_FIT = Operation(Task.GRAPH, GraphFitInput, GraphFitResult, name="fit")


class GraphExpert(
    FittedExpert[GraphRequest, GraphRequest, _Output, GraphFitResult | Prediction]
):
    """Predict with a fitted graph model: node labels, link scores or top-k new links."""

    options_model = GraphOptions
    task = Task.GRAPH
    backend = "torch-geometric"
    operation = GRAPH_PREDICT

    def load(self) -> None:
        require("torch_geometric", "graph")
        from corral.tasks.graph import _nets as nets

        self.nets = nets
        self.predictor = Predictor(nets, self.context.device)
        options = self.context.options
        unknown = sorted(set(options) - _OPTIONS)
        if unknown:
            raise ValueError(f"unknown options {unknown}; known: {sorted(_OPTIONS)}")
        implied = "gcn" if self.context.spec.model.lower().endswith("gcn") else "sage"
        self.architecture = str(options.get("architecture", implied)).lower()
        if self.architecture not in nets.ARCHITECTURES:
            raise ValueError(f"options.architecture must be sage or gcn: {self.architecture!r}")
        task = str(options.get("task", "node"))
        if task not in _TASKS:
            raise ValueError(f"options.task must be node or link: {task!r}")
        self.default_task = _TASKS[task]
        self.hidden = _bounded(options, "hidden", 64, 2, 1024)
        self.layers = _bounded(options, "layers", 2, 1, 4)
        self.epochs = _bounded(options, "epochs", 200, 1, 5000)
        self.models: FittedModels[Loaded] = FittedModels(_bounded(options, "cache", 8, 1, 256))
        self.threads = _bounded(options, "threads", 1, 1, 256)  # see _torch.torch_threads
        self.dropout = float(options.get("dropout", 0.5))
        self.lr = float(options.get("lr", 0.01))
        self.weight_decay = float(options.get("weight_decay", 5e-4))
        if not (0 <= self.dropout < 1 and self.lr > 0 and self.weight_decay >= 0):
            raise ValueError("options: dropout must be in [0, 1), lr > 0, weight_decay >= 0")
        self.degree = bool(options.get("degree_features", True))
        self.device = self.context.device

    # --- the batched interface ----------------------------------------------------------
    def prepare(self, request: GraphRequest) -> list[GraphRequest]:
        return [request]

    def forward(self, items: list[GraphRequest]) -> list[_Output]:
        outputs: list[_Output] = []
        with torch_threads(self.threads):
            for item in items:
                checkpoint()  # between fits: stop once every caller has gone
                outputs.append(self._answer(item))
        return outputs

    def _answer(self, item: GraphRequest) -> _Output:
        """A fit or prediction, or the request error it met (that request's own 4xx)."""
        try:
            if isinstance(item, GraphFitInput):
                return self._fit(item)
            return self._predict(item)
        except RequestError as exc:
            return exc

    def finish(self, request: GraphRequest, outputs: list[_Output]) -> GraphFitResult | Prediction:
        (output,) = outputs
        if isinstance(output, RequestError):
            raise output
        return output

    # --- fitting ------------------------------------------------------------------------
    def _fit(self, request: GraphFitInput) -> GraphFitResult:
        import torch

        started = time.perf_counter()
        task = request.task or self.default_task
        features = check_rows(request.nodes.features, "nodes.features")
        ids = id_map(request.nodes.ids, len(features))
        edges = resolve_edges(request.edges, ids)
        edge_features = edge_rows(request.edge_features, len(edges), "edge_features")
        inputs = node_inputs(features, edges, edge_features, degree=self.degree)
        with np.errstate(all="ignore"):  # values near float64's limit overflow here
            mean, std = inputs.mean(axis=0), inputs.std(axis=0)
            std[std < 1e-12] = 1.0
            scaled = (inputs - mean) / std
        if not all(np.isfinite(a).all() for a in (mean, std, scaled, np.float32(scaled))):
            raise InvalidRequest(
                "nodes.features (or edge_features) are too large to standardise; rescale them",
                param="nodes.features",
            )
        x = torch.as_tensor(scaled, dtype=torch.float32, device=self.device)
        epochs = request.epochs or self.epochs
        if task == "node_classification":
            net, classes, held, metrics = self._fit_nodes(request, ids, x, edges, epochs)
        else:
            if request.labels is not None:
                raise InvalidRequest("labels are for node_classification", param="labels")
            net, held, metrics = self._fit_links(request, x, edges, epochs)
            classes = None
        arrays = {
            "features": features,
            "edges": edges,
            "x_mean": mean,
            "x_std": std,
            **{f"param.{k}": v.detach().cpu().numpy() for k, v in net.state_dict().items()},
        }
        if edge_features is not None:
            arrays["edge_features"] = edge_features
        if ids.kind != "index":
            arrays["ids"] = np.asarray(ids.ids)
        meta = {
            "task": task,
            "expert": self.context.spec.name,
            "architecture": self.architecture,
            "net": asdict(net.spec),
            "id_kind": ids.kind,
            "classes": classes,
            "degree_features": self.degree,
            "nodes": len(features),
            "edges": len(edges),
            "features": features.shape[1],
            "edge_features": None if edge_features is None else edge_features.shape[1],
            "held_out": held,
            "metrics": metrics,
            "epochs": epochs,
            "seed": request.seed,
        }
        info = self.store.save(KIND, request.graph, arrays, meta)
        self.models.put(info, Loaded(info, net, ids, features, edges, edge_features, mean, std))
        return GraphFitResult(
            graph=request.graph,
            version=info.version,
            task=task,
            architecture=self.architecture,
            nodes=len(features),
            edges=len(edges),
            features=features.shape[1],
            classes=classes,
            held_out=held,
            metrics=metrics,
            epochs=epochs,
            fit_seconds=time.perf_counter() - started,
        )

    def _spec(self, in_dim: int, out_dim: int) -> Any:
        return self.nets.NetSpec(
            self.architecture, in_dim, self.hidden, out_dim, self.layers, self.dropout
        )

    def _training(self, epochs: int) -> Any:
        return self.nets.Training(epochs, self.lr, self.weight_decay)

    def _fit_nodes(
        self, request: GraphFitInput, ids: IdMap, x: Any, edges: np.ndarray, epochs: int
    ) -> tuple[Any, list[Any], int, dict[str, float]]:
        """Train on the labels not held out; measure on the held-out ones (stratified, and
        every class keeps at least one training label)."""
        import torch

        if request.labels is None:
            raise InvalidRequest("node_classification needs labels", param="labels")
        labels = resolve_labels(request.labels, ids)
        rng = np.random.default_rng(request.seed)
        held = np.zeros(len(labels.rows), dtype=bool)
        for c in range(len(labels.classes)):
            members = np.flatnonzero(labels.targets == c)
            take = min(int(len(members) * request.held_out), len(members) - 1)
            held[rng.permutation(members)[:take]] = True
        rows = torch.as_tensor(labels.rows[~held], device=self.device)
        targets = torch.as_tensor(labels.targets[~held], device=self.device)
        index = self.nets.edge_index(edges, self.device)
        with self.nets.seeded(request.seed):
            net = self.nets.GraphNet(self._spec(x.size(1), len(labels.classes))).to(self.device)
            self.nets.train_nodes(net, x, index, rows, targets, self._training(epochs))
        metrics: dict[str, float] = {}
        if held.any():
            probabilities = self.nets.softmax(self.nets.run(net, x, index))
            scored = self.nets.classification_metrics(
                probabilities[labels.rows[held]], labels.targets[held]
            )
            metrics = {k: v for k, v in scored.items() if np.isfinite(v)}
        return net, labels.classes, int(held.sum()), metrics

    def _fit_links(
        self, request: GraphFitInput, x: Any, edges: np.ndarray, epochs: int
    ) -> tuple[Any, int, dict[str, float]]:
        """Hold out a share of edges and as many non-edges; train on the rest."""
        import torch

        need = 2 if request.held_out > 0 else 1
        if len(edges) < need:
            raise InvalidRequest(
                f"link_prediction needs at least {need} edges; edges has {len(edges)}",
                param="edges",
            )
        rng = np.random.default_rng(request.seed)
        order = rng.permutation(len(edges))
        count = 0
        if request.held_out > 0:
            count = min(max(1, int(len(edges) * request.held_out)), len(edges) - 1)
        train, test = edges[order[count:]], edges[order[:count]]
        index = self.nets.edge_index(train, self.device)
        positives = torch.as_tensor(train.T, dtype=torch.long, device=self.device)
        with self.nets.seeded(request.seed) as generator:
            net = self.nets.GraphNet(self._spec(x.size(1), self.hidden)).to(self.device)
            self.nets.train_links(net, x, index, positives, self._training(epochs), generator)
        metrics: dict[str, float] = {}
        negatives = non_edges(edges, len(x), count, rng)
        if count and len(negatives):
            z = self.nets.run(net, x, index)
            pairs = np.concatenate([test, negatives])
            truth = np.concatenate([np.ones(len(test)), np.zeros(len(negatives))])
            value = self.nets.auc(np.sum(z[pairs[:, 0]] * z[pairs[:, 1]], axis=1), truth)
            metrics = {"auc": value} if np.isfinite(value) else {}
        return net, count, metrics

    # --- predicting ---------------------------------------------------------------------
    def _predict(self, request: GraphPredictInput) -> Prediction:
        info = self.store.info(KIND, request.graph, request.version)
        loaded = self.models.get(info, lambda: self._restore(info))
        return self.predictor.predict(loaded, request)

    def _restore(self, info: ArtifactInfo) -> Loaded:
        import torch

        arrays = self.store.load(KIND, info.ref, info.version).arrays
        meta = info.meta
        spec = self.nets.NetSpec(**meta["net"])
        net = self.nets.GraphNet(spec)
        net.load_state_dict(
            {k[6:]: torch.as_tensor(v) for k, v in arrays.items() if k.startswith("param.")}
        )
        net.to(self.device).eval()
        n = int(meta["nodes"])
        ids = id_map(arrays["ids"].tolist(), n) if "ids" in arrays else id_map(None, n)
        return Loaded(
            info,
            net,
            ids,
            arrays["features"],
            arrays["edges"],
            arrays.get("edge_features"),
            arrays["x_mean"],
            arrays["x_std"],
        )


def _bounded(options: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = int(options.get(key, default))
    if not low <= value <= high:
        raise ValueError(f"options.{key} must be {low} to {high}: {value}")
    return value
