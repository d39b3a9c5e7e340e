"""Shadow mode over real HTTP: the LLM classifies mirrored /v1/classify traffic off the
response path; the log feeds `corral eval --from-shadow`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from corral.cli import main
from corral.config import parse_config

from ._server import RunningServer, serve

LABELS = ["sport", "business"]


@pytest.fixture(scope="module")
def shadow_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shadow") / "shadow.jsonl"


@pytest.fixture(scope="module")
def server(shadow_log: Path) -> Iterator[RunningServer]:
    config = parse_config(f"""
models:
  - name: fast
    model: HuggingFaceTB/SmolLM2-135M-Instruct
  - name: classifier
    model: sentence-transformers/all-MiniLM-L6-v2
    task: classify
routing:
  shadow: {{route: fast, sample: 1.0, log: {shadow_log}}}
""")
    with serve(config) as running:
        yield running


def _lines(path: Path, count: int, timeout: float = 60.0) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            lines = [json.loads(line) for line in path.read_text().splitlines()]
            if len(lines) >= count:
                return lines
        time.sleep(0.2)
    raise AssertionError(f"no {count} shadow lines in {timeout}s")


def test_sampled_requests_are_mirrored_to_the_shadow_route(
    server: RunningServer, shadow_log: Path, capsys
) -> None:
    texts = ["The striker scored twice in the final", "Shares fell after the profit warning"]
    reply = httpx.post(
        server.v1 + "/classify",
        json={"model": "classifier", "input": texts, "labels": LABELS},
        timeout=60,
    )
    assert reply.status_code == 200
    assert [d["label"] for d in reply.json()["data"]] == LABELS  # the classifier answered
    lines = _lines(shadow_log, 2)
    assert [line["text"] for line in lines] == texts
    for line in lines:
        assert line["primary"] == "classifier" and line["shadow"] == "fast"
        assert line["shadow_label"] in LABELS
        assert line["agree"] == (line["primary_label"] == line["shadow_label"])
        assert float(line["shadow_seconds"]) > 0  # type: ignore[arg-type]
    # the shadow ran under a trace of its own: the caller's still says who answered it
    trace = httpx.get(f"{server.v1}/traces/{reply.headers['x-corral-trace-id']}").json()
    assert trace["expert"] == "classifier" and trace["route"] == "explicit"

    assert main(["eval", "--from-shadow", str(shadow_log)]) == 0
    table = capsys.readouterr().out
    assert "classifier" in table and "fast" in table and "agreement" in table


def test_the_shadow_route_itself_is_not_mirrored(server: RunningServer, shadow_log: Path) -> None:
    before = len(_lines(shadow_log, 2))
    reply = httpx.post(
        server.v1 + "/classify",
        json={"model": "fast", "input": ["A goal in extra time"], "labels": LABELS},
        timeout=60,
    )
    assert reply.status_code == 200 and reply.json()["data"][0]["expert"] == "fast"
    time.sleep(1.0)
    assert len(shadow_log.read_text().splitlines()) == before
