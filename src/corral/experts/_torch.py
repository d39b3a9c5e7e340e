"""torch settings scoped to one call on an expert's worker thread."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["torch_threads"]


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """torch's intra-op threads set to ``count`` for the block, then restored.

    Why: small models (Fracast-0's 85k parameters, an anomaly autoencoder, a GNN on a
    few thousand nodes) run operations too small to gain from a second thread, and the
    threads' synchronisation costs more than the work: one Fracast-0 series took 0.95 s
    on 2 threads and 0.037 s on 1 here. Every torch call on a device runs on that
    device's one worker thread, so no other torch call runs meanwhile."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
