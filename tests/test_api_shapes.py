"""Every family's endpoints over ``httpx.ASGITransport`` on the fake backends
(``tests/fakes.py``): the app, runtime, batcher and dispatcher are corral's own, only the
experts compute with numpy, so these run in well under a second each. The answers are
checked against what the fakes compute for the same input. They are in addition to each
family's real-model tests, never instead of one."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from corral import create_app
from corral.config import parse_config
from corral.runtime import Runtime
from corral.tasks import BUILT_IN, FAMILIES, register_family, unregister_family
from tests.fakes import FAKES, embed_vector, overlap, reply_to

pytestmark = pytest.mark.anyio

_TASKS = ["embed", "rerank", "classify", "chat", "forecast", "detect", "document", "anomaly"]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def fakes() -> Iterator[None]:
    register_family(FAKES)
    try:
        yield
    finally:
        unregister_family(FAKES.name)


@pytest.fixture(scope="module")
async def client(fakes: None, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    state = tmp_path_factory.mktemp("state")
    models = [  # the fakes read nothing from their folder; the runtime wants one
        {
            "name": f"fake-{t}",
            "model": f"fake-{t}",
            "task": t,
            "backend": "fake",
            "path": str(state),
        }
        for t in _TASKS
    ]
    config = parse_config(json.dumps({"models": models, "runtime": {"state_dir": str(state)}}))
    app = create_app(config, Runtime(config))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://corral") as http:
            yield http


def _png(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


async def _ok(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = await http.post(path, json=body)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def test_every_family_but_graph_has_a_fake() -> None:
    faked = {b.task for b in FAKES.backends}
    for family in BUILT_IN:
        if family.name != "graph":  # its one backend trains in about a second: no fake
            assert family.tasks & faked, f"family {family.name} has no fake backend"


def test_a_family_registers_once_and_leaves_no_trace() -> None:
    register_family(FAKES)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_family(FAKES)
    finally:
        unregister_family(FAKES.name)
    assert list(BUILT_IN) == FAMILIES


async def test_embeddings_through_the_openai_client(client: httpx.AsyncClient) -> None:
    llm = openai.AsyncOpenAI(base_url="http://corral/v1", api_key="-", http_client=client)
    texts = ["a cat sat", "on the mat", "a cat sat"]
    reply = await llm.embeddings.create(model="fake-embed", input=texts)
    got = np.array([d.embedding for d in reply.data], dtype=np.float32)
    np.testing.assert_allclose(got, np.stack([embed_vector(t) for t in texts]), atol=1e-6)
    raw = await _ok(client, "/v1/embeddings", {"input": texts[:1], "encoding_format": "base64"})
    vector = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype=np.float32)
    np.testing.assert_allclose(vector, embed_vector(texts[0]), atol=1e-6)


async def test_rerank_orders_by_the_fakes_score(client: httpx.AsyncClient) -> None:
    documents = ["cats and dogs", "the red cat sat", "nothing here"]
    body = {"query": "red cat", "documents": documents}
    reply = await _ok(client, "/v1/rerank", body)
    order = [r["index"] for r in reply["results"]]
    assert order == sorted(range(3), key=lambda i: -overlap("red cat", documents[i]))
    assert reply["results"][0]["relevance_score"] == pytest.approx(1.0)


async def test_classify_picks_the_label_in_the_text(client: httpx.AsyncClient) -> None:
    body = {"input": ["the invoice is overdue", "lunch at noon"], "labels": ["lunch", "invoice"]}
    reply = await _ok(client, "/v1/classify", body)
    assert [d["label"] for d in reply["data"]] == ["invoice", "lunch"]
    assert reply["data"][0]["expert"] == "fake-classify"


async def test_chat_whole_and_streamed_through_the_openai_client(
    client: httpx.AsyncClient,
) -> None:
    llm = openai.AsyncOpenAI(base_url="http://corral/v1", api_key="-", http_client=client)
    messages: list[Any] = [{"role": "user", "content": "one two three"}]
    whole = await llm.chat.completions.create(model="fake-chat", messages=messages)
    assert whole.choices[0].message.content == reply_to(messages) == "three two one"
    stream = await llm.chat.completions.create(model="fake-chat", messages=messages, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "three two one"


async def test_forecast_repeats_the_last_value(client: httpx.AsyncClient) -> None:
    body = {"series": [[1.0, 2.0, 5.0], [3.0, -4.0]], "horizon": 2, "quantiles": [0.1, 0.9]}
    reply = await _ok(client, "/v1/forecast", body)
    assert [d["mean"] for d in reply["data"]] == [[5.0, 5.0], [-4.0, -4.0]]
    assert reply["data"][0]["quantiles"]["0.9"] == [5.0, 5.0]


async def test_detect_boxes_each_whole_image(client: httpx.AsyncClient) -> None:
    reply = await _ok(client, "/v1/detect", {"images": [_png(32, 20), _png(8, 8)]})
    boxes = [d["detections"][0]["box"] for d in reply["data"]]
    assert boxes == [[0.0, 0.0, 32.0, 20.0], [0.0, 0.0, 8.0, 8.0]]
    assert reply["data"][0]["detections"][0]["label"] == "thing"


async def test_documents_run_the_layout_rules_on_the_fake_ocr(
    client: httpx.AsyncClient,
) -> None:
    reply = await _ok(client, "/v1/documents/extract", {"document": _png(200, 40)})
    (page,) = reply["pages"]
    assert [w["text"] for w in page["words"]] == ["Total:", "12.00"]
    assert {"key": "Total", "value": "12.00"}.items() <= page["key_values"][0].items()


async def test_anomaly_fit_score_list_describe_delete(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    rows = np.random.default_rng(0).normal(size=(50, 3))
    fit = await _ok(client, "/v1/anomaly/shape/fit", {"data": rows.tolist()})
    assert fit["algorithm"] == "distance" and fit["version"] == 1
    probe = [[0.0, 0.0, 0.0], [9.0, 9.0, 9.0]]
    scored = await _ok(client, "/v1/anomaly/shape/score", {"data": probe})
    standard = (np.array(probe) - rows.mean(axis=0)) / rows.std(axis=0)
    np.testing.assert_allclose(scored["scores"], np.linalg.norm(standard, axis=1), rtol=1e-3)
    assert scored["is_anomaly"] == [False, True]
    listed = (await client.get("/v1/anomaly")).json()["data"]
    described = (await client.get("/v1/anomaly/shape")).json()
    assert listed == [described] and described["versions"] == [1]
    assert (await client.delete("/v1/anomaly/shape")).json()["deleted"] == 1
    assert (await client.get("/v1/anomaly/shape")).status_code == 404


async def test_models_lists_every_fake_ready(client: httpx.AsyncClient) -> None:
    data = (await client.get("/v1/models")).json()["data"]
    states = {m["id"]: (m["task"], m["state"]) for m in data if m["id"] != "auto"}
    assert states == {f"fake-{t}": (t, "ready") for t in _TASKS}
