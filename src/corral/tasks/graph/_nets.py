"""The networks (PyG's GCNConv / SAGEConv stacks), their training loops, and the metrics
a fit reports. Imported only once torch-geometric is known to be installed.

Training is full-batch (the whole graph each epoch): the graphs corral accepts are bounded
by ``server.limits.max_graph_nodes``, and full-batch is deterministic, which "same fit,
same model" needs. Seeding forks torch's global generator so a fit neither depends on
nor disturbs what ran before it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch_geometric.nn import GCNConv, SAGEConv

from corral.runtime.cancel import checkpoint

__all__ = [
    "GraphNet",
    "NetSpec",
    "Training",
    "auc",
    "classification_metrics",
    "edge_index",
    "run",
    "seeded",
    "sigmoid",
    "softmax",
    "train_links",
    "train_nodes",
]

ARCHITECTURES = {"gcn": GCNConv, "sage": SAGEConv}


@dataclass(frozen=True)
class NetSpec:
    """Everything needed to rebuild a stored network before loading its weights."""

    architecture: str
    in_dim: int
    hidden: int
    out_dim: int
    layers: int
    dropout: float


@dataclass(frozen=True)
class Training:
    epochs: int
    lr: float
    weight_decay: float


class GraphNet(torch.nn.Module):
    """``layers`` graph convolutions, ReLU and dropout between them."""

    def __init__(self, spec: NetSpec) -> None:
        super().__init__()
        self.spec = spec
        conv = ARCHITECTURES[spec.architecture]
        dims = [spec.in_dim] + [spec.hidden] * (spec.layers - 1) + [spec.out_dim]
        self.convs = torch.nn.ModuleList(conv(a, b) for a, b in itertools.pairwise(dims))
        self.dropout = spec.dropout

    def forward(self, x: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        for i, conv in enumerate(self.convs):
            x = conv(x, edges)
            if i < len(self.convs) - 1:
                x = F.dropout(F.relu(x), p=self.dropout, training=self.training)
        return x


@contextmanager
def seeded(seed: int) -> Iterator[torch.Generator]:
    """Torch's global generator set to ``seed`` (initialisation, dropout) and restored
    afterwards; yields a generator of its own for sampling."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield torch.Generator().manual_seed(seed)


def edge_index(edges: np.ndarray, device: str) -> torch.Tensor:
    """``[e, 2]`` row pairs as PyG's ``[2, 2e]`` edge index, both directions."""
    pairs = torch.as_tensor(edges.T, dtype=torch.long)
    return torch.cat([pairs, pairs.flip(0)], dim=1).to(device)


def train_nodes(
    net: GraphNet,
    x: torch.Tensor,
    edges: torch.Tensor,
    rows: torch.Tensor,
    targets: torch.Tensor,
    training: Training,
) -> None:
    """Cross-entropy on the labelled rows, classes weighted by inverse frequency: a fraud
    class of 5 % must not be learnt as "never fraud"."""
    counts = torch.bincount(targets, minlength=net.spec.out_dim).float()
    weight = counts.sum() / (len(counts) * counts.clamp(min=1))
    optimiser = torch.optim.Adam(
        net.parameters(), lr=training.lr, weight_decay=training.weight_decay
    )
    net.train()
    for _ in range(training.epochs):
        checkpoint()  # between epochs: stop once the caller has gone
        optimiser.zero_grad()
        loss = F.cross_entropy(net(x, edges)[rows], targets, weight=weight)
        loss.backward()
        optimiser.step()
    net.eval()


def train_links(
    net: GraphNet,
    x: torch.Tensor,
    edges: torch.Tensor,
    positives: torch.Tensor,
    training: Training,
    generator: torch.Generator,
) -> None:
    """Dot-product scores of node embeddings, binary cross-entropy against as many
    random pairs per epoch. The negatives come from ``generator``, not PyG's
    ``negative_sampling`` (which draws from Python's global ``random``): on a sparse
    graph a random pair is a non-edge almost always, and the fit stays seeded."""
    n = x.size(0)
    optimiser = torch.optim.Adam(
        net.parameters(), lr=training.lr, weight_decay=training.weight_decay
    )
    net.train()
    for _ in range(training.epochs):
        checkpoint()
        optimiser.zero_grad()
        z = net(x, edges)
        negatives = torch.randint(0, n, positives.shape, generator=generator).to(x.device)
        scores = torch.cat([pair_scores(z, positives), pair_scores(z, negatives)])
        truth = torch.cat([torch.ones(positives.size(1)), torch.zeros(negatives.size(1))])
        loss = F.binary_cross_entropy_with_logits(scores, truth.to(x.device))
        loss.backward()
        optimiser.step()
    net.eval()


def pair_scores(z: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """Logit of a link for each ``[2, k]`` pair: the dot product of its embeddings."""
    return (z[pairs[0]] * z[pairs[1]]).sum(dim=-1)


def auc(scores: np.ndarray, truth: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties sharing their mean rank."""
    positives = int(truth.sum())
    negatives = len(truth) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = (sums / counts)[inverse]
    return float(
        (ranks[truth == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives)
    )


def classification_metrics(probabilities: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Accuracy and macro F1; with two classes also the AUC of class 1 (the later label)."""
    predicted = probabilities.argmax(axis=1)
    scores = []
    for c in range(probabilities.shape[1]):
        tp = np.sum((predicted == c) & (targets == c))
        fp = np.sum((predicted == c) & (targets != c))
        fn = np.sum((predicted != c) & (targets == c))
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    metrics = {"accuracy": float(np.mean(predicted == targets)), "macro_f1": float(np.mean(scores))}
    if probabilities.shape[1] == 2:
        metrics["auc"] = auc(probabilities[:, 1], targets)
    return metrics


def run(net: Any, x: torch.Tensor, index: torch.Tensor) -> np.ndarray:
    """The network's output for every node, without autograd, as float64."""
    with torch.inference_mode():
        return np.asarray(net(x, index).double().cpu().numpy())


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=1, keepdims=True))


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return np.asarray(np.exp(-np.logaddexp(0.0, -logits)))
