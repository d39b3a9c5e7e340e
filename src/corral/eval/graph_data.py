"""Generated graphs with a known answer, for the graph tests and ``bench/graph_eval.py``:
no graph data set installs offline beyond PyG's KarateClub.

* ``fraud_rings``: accounts and payments. Fraud accounts' own features are drawn from
  the same distribution as everyone's, and their payment counts overlap ordinary busy
  accounts' (merchants receive far more); what sets them apart is that they pay each
  other densely, in rings. A model of the features alone is at chance by construction.
* ``user_items``: a bipartite user-item graph with communities: users mostly pick items
  of their own community, so held-out links are predictable from the graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Graph", "fraud_rings", "user_items"]


@dataclass(frozen=True)
class Graph:
    features: np.ndarray  # [n, f]
    edges: np.ndarray  # [e, 2] row pairs
    labels: np.ndarray  # [n] int: fraud 1 / normal 0, or community
    kinds: np.ndarray  # [n] str: "account", "merchant" / "user", "item"


def fraud_rings(
    accounts: int = 1200,
    rings: int = 12,
    ring_size: int = 10,
    merchants: int = 20,
    features: int = 8,
    density: float = 0.7,
    seed: int = 0,
) -> Graph:
    """Accounts 0..n-1: the first ``rings * ring_size`` are fraud, then merchants."""
    rng = np.random.default_rng(seed)
    fraud = rings * ring_size
    n = accounts
    x = rng.normal(size=(n, features))
    merchant_ids = np.arange(fraud, fraud + merchants)
    edges: list[tuple[int, int]] = []
    for account in range(n):
        if account in merchant_ids:
            continue
        # everyone pays a few random accounts (how many varies a lot: some are busy)
        for _ in range(int(rng.geometric(1 / 4))):
            other = int(rng.integers(n))
            if other != account:
                edges.append((account, other))
        if rng.random() < 0.6:
            edges.append((account, int(rng.choice(merchant_ids))))
    for ring in range(rings):
        members = np.arange(ring * ring_size, (ring + 1) * ring_size)
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                if rng.random() < density:
                    edges.append((int(a), int(b)))
    labels = np.zeros(n, dtype=np.int64)
    labels[:fraud] = 1
    kinds = np.array(["account"] * n, dtype=object)
    kinds[merchant_ids] = "merchant"
    return Graph(x, np.asarray(edges, dtype=np.int64), labels, kinds.astype(str))


def user_items(
    users: int = 300,
    items: int = 200,
    communities: int = 4,
    per_user: int = 10,
    loyalty: float = 0.9,
    features: int = 8,
    seed: int = 0,
) -> Graph:
    """Users 0..users-1, then items; each user links ``per_user`` distinct items, from
    its own community with probability ``loyalty``. Features are noise: only the links
    carry the communities."""
    rng = np.random.default_rng(seed)
    user_group = rng.integers(communities, size=users)
    item_group = rng.integers(communities, size=items)
    edges = []
    for u in range(users):
        own = np.flatnonzero(item_group == user_group[u])
        other = np.flatnonzero(item_group != user_group[u])
        chosen: set[int] = set()
        while len(chosen) < per_user:
            pool = own if rng.random() < loyalty else other
            chosen.add(int(rng.choice(pool)))
        edges += [(u, users + i) for i in sorted(chosen)]
    x = rng.normal(size=(users + items, features))
    labels = np.concatenate([user_group, item_group])
    kinds = np.array(["user"] * users + ["item"] * items)
    return Graph(x, np.asarray(edges, dtype=np.int64), labels, kinds)
