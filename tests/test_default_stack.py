"""The built-in default is the whole mixture: the README quickstart, verbatim, over HTTP.

Every ``curl`` of the README's Quickstart block runs in a shell against the default
server (only ``localhost:8000`` is replaced by its address), in a folder holding the
files the commands name (a photo and a PDF invoice), and must answer 200 with a real
result of its family.
"""

from __future__ import annotations

import io
import json
import random
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral.config import Task, default_config, load_config, parse_config
from corral.eval.invoices import make_invoice, render_pdf

from ._server import RunningServer, serve

ROOT = Path(__file__).resolve().parents[1]


def _quickstart_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quickstart", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [c.strip() for c in re.split(r"\n(?=curl )", block.replace("\\\n", "")) if c.strip()]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """photo.jpg (skimage's astronaut: a face) and invoice.pdf (a text layer)."""
    from PIL import Image
    from skimage import data

    where = tmp_path_factory.mktemp("quickstart")
    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buffer, format="JPEG")
    (where / "photo.jpg").write_bytes(buffer.getvalue())
    (where / "invoice.pdf").write_bytes(render_pdf(make_invoice(random.Random(3))))
    return where


def _run(command: str, server: RunningServer, folder: Path) -> Any:
    command = command.replace("localhost:8000", server.url.removeprefix("http://"))
    done = subprocess.run(
        ["bash", "-c", command], cwd=folder, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert "error" not in reply, (command, reply)
    return reply


def test_readme_quickstart_answers_one_request_per_family(
    default_server: RunningServer, folder: Path
) -> None:
    commands = _quickstart_commands()
    replies = {}
    for command in commands:
        path = re.search(r"/v1/[a-z/_]+", command)
        assert path is not None
        replies[path.group(0)] = _run(command, default_server, folder)
    assert replies["/v1/chat/completions"]["choices"][0]["message"]["content"].strip()
    assert len(replies["/v1/embeddings"]["data"][0]["embedding"]) == 384
    assert replies["/v1/rerank"]["results"][0]["index"] == 1
    assert replies["/v1/classify"]["data"][0]["label"] == "sport"
    entities = {e["text"] for e in replies["/v1/ner"]["data"][0]["entities"]}
    assert {"Tim Cook", "Apple", "Cupertino"} <= entities
    (forecast,) = replies["/v1/forecast"]["data"]
    assert len(forecast["mean"]) == 6 and all(90 < v < 220 for v in forecast["mean"])
    (image,) = replies["/v1/detect"]["data"]
    assert any(d["label"] == "face" for d in image["detections"])
    (page,) = replies["/v1/documents/extract"]["pages"]
    assert page["source"] == "text" and any(kv["key"] == "Total" for kv in page["key_values"])
    assert replies["/v1/anomaly/sensors/score"]["is_anomaly"] == [False, True]
    assert len(replies["/v1/graph/payments/predict"]["data"]) == 2
    served = {m["task"] for m in replies["/v1/models"]["data"]}
    assert served >= {t.value for t in Task}


def test_examples_offline_is_the_builtin_default() -> None:
    text = (ROOT / "examples" / "offline.yaml").read_text(encoding="utf-8")
    assert load_config(ROOT / "examples" / "offline.yaml") == default_config()
    assert text == (ROOT / "src" / "corral" / "default.yaml").read_text(encoding="utf-8")
    for plan in ("gpu.yaml", "cpu.yaml"):  # the plans load (their hub weights are not here)
        config = load_config(ROOT / "examples" / plan)
        assert {m.name for m in config.models} >= {"fast", "embedder", "forecaster", "graph"}


def test_a_task_nobody_serves_says_which_models_do_and_the_yaml_line() -> None:
    config = parse_config("models:\n  - {name: embedder, model: sentence-transformers/all-MiniLM-L6-v2}\n")
    with serve(config) as server:
        reply = httpx.post(server.v1 + "/forecast", json={"series": [[1, 2, 3]], "horizon": 2})
    assert reply.status_code == 404
    message = reply.json()["error"]["message"]
    assert "no forecast expert is configured" in message
    assert "fracast" in message and "statsforecast/AutoETS" in message
    assert "- {name: forecaster, model: fracast}" in message


def _chat_auto(server: RunningServer, content: Any) -> httpx.Response:
    reply = httpx.post(
        server.v1 + "/chat/completions",
        json={"model": "auto", "messages": [{"role": "user", "content": content}]},
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    return reply


def _stages(server: RunningServer, reply: httpx.Response) -> list[tuple[str, str]]:
    trace = httpx.get(server.v1 + "/traces/" + reply.headers["x-corral-trace-id"]).json()
    return [(d["stage"], d["choice"]) for d in trace["decisions"]]


SERIES = [112, 118, 132, 129, 121, 135, 148, 148, 136, 119, 104, 118, 115, 126, 141, 135]


def test_chat_auto_with_an_inline_series_gets_a_forecast(default_server: RunningServer) -> None:
    numbers = ", ".join(str(v) for v in SERIES)
    reply = _chat_auto(default_server, f"Forecast the next 4 values: {numbers}")
    assert reply.headers["x-corral-expert"] == "forecaster"
    (forecast,) = json.loads(reply.json()["choices"][0]["message"]["content"])
    assert len(forecast["mean"]) == 4 and all(90 < v < 180 for v in forecast["mean"])
    direct = httpx.post(
        default_server.v1 + "/forecast",
        json={"model": "forecaster", "series": [SERIES], "horizon": 4},
        timeout=60,
    ).json()
    assert forecast["mean"] == direct["data"][0]["mean"]  # the forecaster's own answer
    assert ("semantic", "forecast") in _stages(default_server, reply)


def test_chat_auto_with_an_attached_image_reaches_the_detector(
    default_server: RunningServer, folder: Path
) -> None:
    import base64

    image = base64.b64encode((folder / "photo.jpg").read_bytes()).decode()
    content = [
        {"type": "text", "text": "Find the faces in this picture"},
        {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{image}"}},
    ]
    reply = _chat_auto(default_server, content)
    assert reply.headers["x-corral-expert"] == "detector"
    (found,) = json.loads(reply.json()["choices"][0]["message"]["content"])
    assert any(d["label"] == "face" for d in found["detections"])


def test_chat_auto_asks_for_the_data_when_the_message_has_none(
    default_server: RunningServer,
) -> None:
    reply = _chat_auto(default_server, "Forecast the next values of this series")
    text = reply.json()["choices"][0]["message"]["content"]
    assert "send the series' values" in text
    stages = _stages(default_server, reply)
    assert ("semantic", "forecast") in stages and ("extract", "") in stages
    steps = httpx.get(
        default_server.v1 + "/traces/" + reply.headers["x-corral-trace-id"]
    ).json()["steps"]
    assert steps == []  # no LLM guessed, no expert ran
