"""The difficulty router: fitted with `corral route fit --difficulty` on generated prompts
(easy one-liners vs multi-step tasks), it sends the target share to the large LLM and
routes model "auto" chat by it, traced."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from corral.cli import main
from corral.config import parse_config
from corral.routing import FittedRouting

from ._server import RunningServer, serve

CONFIG = """
models:
  - name: fast
    model: HuggingFaceTB/SmolLM2-135M-Instruct
    default: true
  - name: powerful
    model: HuggingFaceTB/SmolLM2-135M-Instruct   # a stand-in: the test checks the routing
  - name: embedder
    model: sentence-transformers/all-MiniLM-L6-v2
routing:
  difficulty: {small: fast, large: powerful, large_share: 0.3}
"""
SUBJECTS = [
    "the weather",
    "a cat",
    "coffee",
    "football",
    "the moon",
    "Paris",
    "a bicycle",
    "music",
    "the ocean",
    "a birthday",
    "trains",
    "gardening",
    "chess",
    "the library",
    "pizza",
    "mountains",
    "a dog",
    "winter",
    "the market",
    "photography",
]
EASY = [
    "Say hello about {}.",
    "Give me one word for {}.",
    "Is {} nice? Answer yes or no.",
    "Name a colour linked to {}.",
    "Write a three-word title about {}.",
]
HARD = [
    "Derive step by step a mathematical model of {} and prove its stability.",
    "Design a distributed system to simulate {} and analyse its failure modes in depth.",
    "Write a detailed multi-part essay comparing economic theories as they apply to {}.",
    "Plan a rigorous research study on {}, with hypotheses, statistics and threats to validity.",
    "Implement and explain an optimised algorithm that schedules {} under many constraints.",
]


def _prompts(seed: int, n: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(["small", "large"])
        template = rng.choice(EASY if label == "small" else HARD)
        rows.append({"text": template.format(rng.choice(SUBJECTS)), "label": label})
    return rows


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("difficulty")
    (folder / "corral.yaml").write_text(CONFIG)
    data = folder / "prompts.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in _prompts(1, 200)))
    assert main(["route", "fit", str(folder / "corral.yaml"), str(data), "--difficulty"]) == 0
    return folder / "corral.fitted.json"


@pytest.fixture(scope="module")
def server(fitted: Path) -> Iterator[RunningServer]:
    with serve(parse_config(CONFIG), fitted=FittedRouting.load(fitted)) as running:
        yield running


def test_fit_keeps_the_better_baseline(fitted: Path) -> None:
    model = FittedRouting.load(fitted).difficulty
    assert model is not None and model.kind in ("logistic", "knn")
    assert set(model.auc) == {"logistic", "knn"}
    assert model.auc[model.kind] == max(model.auc.values()) > 0.9


def test_threshold_sends_the_target_share_large_on_held_out_prompts(
    server: RunningServer, fitted: Path
) -> None:
    model = FittedRouting.load(fitted).difficulty
    assert model is not None
    held_out = [row["text"] for row in _prompts(2, 200)]
    reply = httpx.post(server.v1 + "/embeddings", json={"input": held_out, "model": "embedder"})
    vectors = np.array([d["embedding"] for d in reply.json()["data"]])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    share = float((model.score(vectors) >= model.threshold).mean())
    assert abs(share - 0.3) <= 0.1, share


@pytest.mark.parametrize(
    ("prompt", "expert"),
    [
        ("Say hello about trains.", "fast"),
        ("Derive step by step a mathematical model of chess and prove its stability.", "powerful"),
    ],
)
def test_auto_chat_goes_to_the_llm_the_difficulty_picks(
    server: RunningServer, prompt: str, expert: str
) -> None:
    reply = httpx.post(
        server.v1 + "/chat/completions",
        json={
            "model": "auto",
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": 16,
            "temperature": 0,
        },
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    decision = next(d for d in reply.json()["corral"]["decisions"] if d["stage"] == "difficulty")
    assert decision["choice"] == expert
    assert reply.headers["x-corral-expert"] == expert
