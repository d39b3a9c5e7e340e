"""Python's cyclic garbage collector, kept off the request path once experts are loaded.

A loaded expert brings millions of long-lived Python objects (torch, transformers,
OpenVINO, the tokenizer, the model's modules). CPython's full (generation 2) collection
walks every one of them, holding the GIL: measured in a server with the default MiniLM
on OpenVINO, about 220 ms each, one every few seconds under 64 clients, during which the
event loop and the forward pass's worker both stop (a batch of 38 sentences took 315 ms
instead of 35). ``gc.freeze()`` after a load moves what exists then into the permanent
generation, which collections skip, so later ones walk only what requests create.

Frozen objects are never collected, so an eviction thaws everything first
(``collect_all``): the evicted weights' reference cycles are freed as before, and what
is still alive is frozen again. A runtime that closes thaws the heap (``thaw``), so a
process that goes on without it (an embedding application, a test) collects as usual.
"""

from __future__ import annotations

import gc

__all__ = ["collect_all", "freeze_loaded", "thaw"]


def freeze_loaded() -> None:
    """After a load: leave what exists now (the new expert's objects) out of collections.
    O(1): no collection runs here; whatever garbage the load left is freed at the next
    ``collect_all``."""
    gc.freeze()


def collect_all() -> None:
    """After an unload: collect everything, frozen objects too, then freeze what is left."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def thaw() -> None:
    """After the last unload: everything back under the collector's care."""
    gc.unfreeze()
