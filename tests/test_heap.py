"""The garbage collector and loaded experts (``corral.runtime.heap``): once an expert has
loaded, its objects are out of every later full collection, and an eviction still frees
its weights, reference cycles included. Over HTTP on ``httpx.ASGITransport``, on an
embedder whose weights are a reference cycle (what only the cyclic collector frees)."""

from __future__ import annotations

import gc
import json
import weakref
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import numpy as np
import pytest

from corral import create_app
from corral.config import Task, parse_config
from corral.runtime import Runtime
from corral.tasks import register_family, unregister_family
from corral.tasks.family import Backend, TaskFamily
from tests.fakes import FakeEmbedder, embed_vector

pytestmark = pytest.mark.anyio


class _CyclicWeights:
    """4 MiB of 'weights' in a reference cycle: refcounting alone never frees them."""

    def __init__(self) -> None:
        self.array = np.zeros(2**20, dtype=np.float32)
        self.me = self


class CyclicEmbedder(FakeEmbedder):
    """The fake embedder, holding its weights in a reference cycle while loaded."""

    backend = "cyclic"
    loaded: ClassVar[list[weakref.ref[_CyclicWeights]]] = []  # every load's weights

    def load(self) -> None:
        self.weights = _CyclicWeights()
        type(self).loaded.append(weakref.ref(self.weights))

    def unload(self) -> None:
        del self.weights


_FAMILY = TaskFamily(
    name="cyclic",
    backends=(Backend(Task.EMBED, "cyclic", "tests.test_heap:CyclicEmbedder", weightless=True),),
)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def family() -> Iterator[None]:
    register_family(_FAMILY)
    CyclicEmbedder.loaded.clear()
    try:
        yield
    finally:
        unregister_family(_FAMILY.name)


@pytest.fixture
def app(family: None, tmp_path: Path) -> Any:
    models = [  # two sets of weights (two paths), so each load evicts the other
        {
            "name": name,
            "model": name,
            "task": "embed",
            "backend": "cyclic",
            "path": str(tmp_path / name),
            "preload": False,
        }
        for name in ("first", "second")
    ]
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
    runtime = {"state_dir": str(tmp_path), "max_loaded": 1}
    config = parse_config(json.dumps({"models": models, "runtime": runtime}))
    return create_app(config, Runtime(config))


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://corral") as http:
            yield http


async def _embed(http: httpx.AsyncClient, model: str, text: str) -> np.ndarray:
    reply = await http.post("/v1/embeddings", json={"model": model, "input": [text]})
    assert reply.status_code == 200, reply.text
    return np.array(reply.json()["data"][0]["embedding"], dtype=np.float32)


def _tracked(target: Any) -> bool:
    """Whether the collector's generations hold ``target`` (frozen objects are not)."""
    return any(obj is target for obj in gc.get_objects())


async def test_a_loaded_experts_objects_are_left_out_of_collections(
    client: httpx.AsyncClient,
) -> None:
    vector = await _embed(client, "first", "frozen weights still answer")
    np.testing.assert_allclose(vector, embed_vector("frozen weights still answer"), atol=1e-6)
    (weights,) = [ref() for ref in CyclicEmbedder.loaded]
    assert weights is not None
    assert not _tracked(weights)  # in the permanent generation: no collection walks it
    assert gc.get_freeze_count() > 0


async def test_an_eviction_frees_the_weights_even_in_a_reference_cycle(
    client: httpx.AsyncClient,
) -> None:
    await _embed(client, "first", "one")
    await _embed(client, "second", "two")  # max_loaded: 1, so `first` is evicted
    first, second = CyclicEmbedder.loaded
    assert first() is None  # its cycle was collected though it had been frozen
    assert second() is not None
    await _embed(client, "first", "three")  # and back: `second` goes the same way
    assert second() is None
    experts = (await client.get("/v1/experts")).json()["data"]
    assert {e["name"]: e["state"] for e in experts} == {"first": "ready", "second": "unloaded"}


async def test_a_closed_runtime_leaves_nothing_frozen(client: httpx.AsyncClient, app: Any) -> None:
    await _embed(client, "first", "loaded, so frozen")
    assert gc.get_freeze_count() > 0
    await app.state.runtime.close()  # what the lifespan's shutdown runs
    assert gc.get_freeze_count() == 0
