"""A client's graph as validated arrays: node rows, edges as row pairs, labels as classes.

Every check names the place that is wrong (``nodes.features[3][1]``, ``edges[7][0]``),
because a 422 for a 50,000-edge body is useless unless it says which edge. These run in
the expert's worker thread (``forward``), not on the event loop: resolving a large edge
list through the id map takes a while.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from corral.errors import InvalidRequest
from corral.experts._numeric import float_rows
from corral.tasks.graph.inputs import Edge, Label, NodeId

__all__ = [
    "IdMap",
    "Labels",
    "check_rows",
    "edge_rows",
    "id_map",
    "node_inputs",
    "non_edges",
    "resolve_edges",
    "resolve_labels",
]

IdKind = Literal["index", "int", "str"]


def check_rows(rows: Sequence[Sequence[float]], where: str, width: int | None = None) -> np.ndarray:
    """Rows as a float64 matrix; 422 when empty, ragged, not finite or of the wrong width."""
    matrix = float_rows(rows, where)
    if width is not None and matrix.shape[1] != width:
        raise InvalidRequest(
            f"{where} rows have {matrix.shape[1]} values; the graph was fitted with {width}",
            param=f"{where}[0]",
        )
    return matrix


@dataclass
class IdMap:
    """Node ids and the row each names. Without client ids, ids are row indices."""

    kind: IdKind
    ids: list[NodeId]
    rows: dict[NodeId, int]

    def row(self, node: NodeId, where: str) -> int:
        """The row of ``node``; 422 naming ``where`` when the graph has no such node."""
        if self.kind == "index":
            if isinstance(node, int) and 0 <= node < len(self.ids):
                return node
            raise InvalidRequest(
                f"{where} is {node!r}; without nodes.ids nodes are row indices 0.."
                f"{len(self.ids) - 1}",
                param=where,
            )
        found = self.rows.get(node) if isinstance(node, int) == (self.kind == "int") else None
        if found is None:
            raise InvalidRequest(f"{where}: unknown node {node!r}", param=where)
        return found

    def rows_of(self, nodes: Sequence[NodeId], where: str) -> np.ndarray:
        return np.fromiter(
            (self.row(n, f"{where}[{i}]") for i, n in enumerate(nodes)), np.int64, len(nodes)
        )

    def extended(self, new: Sequence[NodeId], where: str) -> IdMap:
        """This map plus ``new`` ids (inductive prediction): new ids must be new."""
        kind = self.kind if self.kind != "index" else "int"
        rows: dict[NodeId, int] = (
            dict(self.rows) if self.kind != "index" else {i: i for i in range(len(self.ids))}
        )
        for i, node in enumerate(new):
            if isinstance(node, int) != (kind == "int"):
                raise InvalidRequest(
                    f"{where}[{i}] is {node!r}; this graph's ids are "
                    f"{'integers' if kind == 'int' else 'strings'}",
                    param=f"{where}[{i}]",
                )
            if node in rows:
                raise InvalidRequest(
                    f"{where}[{i}] is {node!r}, a node already in the graph (or repeated)",
                    param=f"{where}[{i}]",
                )
            rows[node] = len(rows)
        return IdMap(kind, [*self.ids, *new], rows)


def id_map(ids: Sequence[NodeId] | None, count: int, where: str = "nodes.ids") -> IdMap:
    """The id map of a graph of ``count`` rows; 422 for repeats, mixed kinds, a wrong count."""
    if ids is None:
        return IdMap("index", list(range(count)), {})
    if len(ids) != count:
        raise InvalidRequest(
            f"{where} has {len(ids)} ids for {count} feature rows; give one id per row",
            param=where,
        )
    kind: IdKind = "int" if isinstance(ids[0], int) else "str"
    rows: dict[NodeId, int] = {}
    for i, node in enumerate(ids):
        if isinstance(node, int) != (kind == "int"):
            raise InvalidRequest(
                f"{where}[{i}] is {node!r}; {where}[0] is {ids[0]!r}: ids must be all "
                "strings or all integers",
                param=f"{where}[{i}]",
            )
        if rows.setdefault(node, i) != i:
            raise InvalidRequest(f"{where}[{i}] repeats {node!r}", param=f"{where}[{i}]")
    return IdMap(kind, list(ids), rows)


def resolve_edges(edges: Sequence[Edge], ids: IdMap, where: str = "edges") -> np.ndarray:
    """Edges as an ``[e, 2]`` array of rows."""
    out = np.empty((len(edges), 2), dtype=np.int64)
    for i, (source, target) in enumerate(edges):
        out[i, 0] = ids.row(source, f"{where}[{i}][0]")
        out[i, 1] = ids.row(target, f"{where}[{i}][1]")
    return out


def node_inputs(
    features: np.ndarray,
    edges: np.ndarray,
    edge_features: np.ndarray | None,
    *,
    degree: bool,
) -> np.ndarray:
    """What the network reads per node: its features, the mean of its edges' features,
    and log(1 + degree). Why degree: GCN's and GraphSAGE's mean-normalised aggregation
    cannot count neighbours, so without it a dense ring of ordinary-looking accounts
    looks like any account; with it, two layers see "busy, among busy neighbours"."""
    n = len(features)
    parts = [features]
    both = np.concatenate([edges[:, 0], edges[:, 1]]) if len(edges) else np.empty(0, np.int64)
    counts = np.bincount(both, minlength=n).astype(np.float64)
    if edge_features is not None:
        sums = np.zeros((n, edge_features.shape[1]))
        np.add.at(sums, edges[:, 0], edge_features)
        np.add.at(sums, edges[:, 1], edge_features)
        parts.append(sums / np.maximum(counts, 1)[:, None])
    if degree:
        parts.append(np.log1p(counts)[:, None])
    return np.concatenate(parts, axis=1)


@dataclass(frozen=True)
class Labels:
    rows: np.ndarray  # int64 rows of the labelled nodes
    targets: np.ndarray  # int64 class index of each
    classes: list[Label]


def resolve_labels(labels: dict[str, Label], ids: IdMap) -> Labels:
    """Label keys (JSON object keys are strings) to rows; values to sorted class indices."""
    if not labels:
        raise InvalidRequest("labels is empty; label some nodes", param="labels")
    kinds = {type(v) for v in labels.values()}
    if len(kinds) > 1:
        raise InvalidRequest("labels mixes string and integer labels; use one kind", param="labels")
    rows = np.empty(len(labels), dtype=np.int64)
    for i, key in enumerate(labels):
        node: NodeId = key
        if ids.kind != "str":
            try:
                node = int(key)
            except ValueError:
                raise InvalidRequest(
                    f"labels: key {key!r} is not a node: this graph's ids are integers",
                    param=f"labels.{key}",
                ) from None
        rows[i] = ids.row(node, f"labels.{key}")
    if len(set(rows.tolist())) != len(rows):  # "1" and "01" both name node 1
        raise InvalidRequest("labels names a node twice", param="labels")
    classes: list[Label] = sorted(set(labels.values()))  # type: ignore[type-var]
    if len(classes) < 2:
        raise InvalidRequest(
            f"labels has one class ({classes[0]!r}); a classifier needs at least two",
            param="labels",
        )
    position = {c: i for i, c in enumerate(classes)}
    targets = np.fromiter((position[v] for v in labels.values()), np.int64, len(labels))
    return Labels(rows, targets, classes)


def edge_rows(rows: list[list[float]] | None, edges: int, where: str) -> np.ndarray | None:
    """Edge feature rows: one per edge when given (``None`` when not)."""
    if rows is None:
        return None
    if len(rows) != edges:
        raise InvalidRequest(f"{where} has {len(rows)} rows for {edges} edges", param=where)
    if not rows:
        return None
    return check_rows(rows, where)


def non_edges(edges: np.ndarray, n: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``count`` distinct node pairs that are not edges (either way) nor self-pairs."""
    taken = {(int(a), int(b)) for a, b in edges} | {(int(b), int(a)) for a, b in edges}
    found: list[tuple[int, int]] = []
    for _ in range(100 * count):
        if len(found) == count:
            break
        a, b = (int(v) for v in rng.integers(0, n, 2))
        if a != b and (a, b) not in taken:
            taken.update({(a, b), (b, a)})
            found.append((a, b))
    return np.asarray(found, dtype=np.int64).reshape(-1, 2)
