"""Experts whose models are fitted over HTTP and kept in the artifact store (anomaly
detectors, graph models): the store, and a bounded cache of the models loaded from it.

A fitted model is stored once (``artifacts.py``) and read back on its first use; loading
it again for every request would re-read and rebuild it (a torch module, a pyod
detector), so each expert keeps the ``cache_size`` most recently used ones. The key is
``(ref, version, created)``: a model deleted and fitted again under the same name and
version is a new entry, never the old one served from the cache.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from corral.artifacts import ArtifactInfo, ArtifactStore
from corral.errors import ExpertUnavailable
from corral.experts.base import Expert, ItemT, OutputT, RequestT, ResultT

__all__ = ["FittedExpert", "FittedModels"]

T = TypeVar("T")


class FittedModels(Generic[T]):
    """The ``size`` most recently used fitted models, least recent dropped first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._loaded: OrderedDict[tuple[str, int, float], T] = OrderedDict()

    def get(self, info: ArtifactInfo, build: Callable[[], T]) -> T:
        """The model ``info`` names: from the cache, else ``build()`` and kept."""
        key = (info.ref, info.version, info.created)
        if key in self._loaded:
            self._loaded.move_to_end(key)
            return self._loaded[key]
        return self.put(info, build())

    def put(self, info: ArtifactInfo, model: T) -> T:
        """Keep ``model`` (just fitted, or just built) as the one ``info`` names."""
        self._loaded[(info.ref, info.version, info.created)] = model
        while len(self._loaded) > self.size:
            self._loaded.popitem(last=False)
        return model

    def clear(self) -> None:
        self._loaded.clear()

    def __len__(self) -> int:
        return len(self._loaded)


class FittedExpert(Expert[RequestT, ItemT, OutputT, ResultT]):
    """An expert that fits models and keeps them in the artifact store. Subclasses set
    ``self.models = FittedModels(size)`` in ``load`` (the size is their option)."""

    models: FittedModels[Any]

    @property
    def store(self) -> ArtifactStore:
        if self.context.artifacts is None:
            raise ExpertUnavailable(
                f"expert {self.context.spec.name!r} keeps fitted models in the artifact "
                "store, and has none: set runtime.state_dir"
            )
        return self.context.artifacts

    def unload(self) -> None:
        self.models.clear()
