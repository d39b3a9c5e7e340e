"""The difficulty router: fitted with `corral route fit --difficulty` on generated prompts
(easy one-liners vs multi-step tasks), it sends the target share to the large LLM and
routes model "auto" chat by it, traced."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from corral.cli import main
from corral.config import parse_config
from corral.errors import ConfigError
from corral.routing import FittedRouting, Router
from corral.runtime import Runtime

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


# --- a ladder of three LLMs --------------------------------------------------------------
LADDER_CONFIG = """
models:
  - name: tiny
    model: HuggingFaceTB/SmolLM2-135M-Instruct
    default: true
  - name: fast
    model: HuggingFaceTB/SmolLM2-135M-Instruct   # stand-ins: the test checks the routing
  - name: powerful
    model: HuggingFaceTB/SmolLM2-135M-Instruct
  - name: embedder
    model: sentence-transformers/all-MiniLM-L6-v2
routing:
  difficulty: {experts: [tiny, fast, powerful]}   # cheapest first; equal shares
"""
MEDIUM = [
    "Summarise in two sentences why {} matters to people.",
    "Write a short paragraph describing {} for a travel brochure.",
    "Explain briefly, in plain words, how {} works.",
    "List three interesting facts about {} with one line each.",
    "Write a friendly four-line email inviting a colleague to talk about {}.",
]
TIERS = {"tiny": EASY, "fast": MEDIUM, "powerful": HARD}


def _ladder_prompts(seed: int, n: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(list(TIERS))
        rows.append({"text": rng.choice(TIERS[label]).format(rng.choice(SUBJECTS)), "label": label})
    return rows


@pytest.fixture(scope="module")
def ladder_fitted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ladder")
    (folder / "corral.yaml").write_text(LADDER_CONFIG)
    data = folder / "prompts.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in _ladder_prompts(1, 240)))
    assert main(["route", "fit", str(folder / "corral.yaml"), str(data), "--difficulty"]) == 0
    return folder / "corral.fitted.json"


@pytest.fixture(scope="module")
def ladder_server(ladder_fitted: Path) -> Iterator[RunningServer]:
    with serve(parse_config(LADDER_CONFIG), fitted=FittedRouting.load(ladder_fitted)) as running:
        yield running


def _auto_chat(server: RunningServer, messages: list[dict[str, str]]) -> dict[str, Any]:
    """One ``model: auto`` chat; its trace from /v1/traces/{id}."""
    reply = httpx.post(
        server.v1 + "/chat/completions",
        json={"model": "auto", "messages": messages, "max_tokens": 8, "temperature": 0},
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    trace = httpx.get(server.v1 + f"/traces/{reply.headers['x-corral-trace-id']}")
    assert trace.status_code == 200, trace.text
    data: dict[str, Any] = trace.json()
    assert data["expert"] == reply.headers["x-corral-expert"]
    return data


def test_ladder_fits_a_rung_per_expert_but_the_last(ladder_fitted: Path) -> None:
    fitted = FittedRouting.load(ladder_fitted)
    assert len(fitted.ladder) == 2
    for rung in fitted.ladder:
        assert rung.auc[rung.kind] == max(rung.auc.values()) > 0.9
    assert [round(rung.large_share, 3) for rung in fitted.ladder] == [0.667, 0.333]


def test_each_message_is_answered_by_the_cheapest_capable_of_three(
    ladder_server: RunningServer,
) -> None:
    """Held-out prompts of each tier, one request each: the trace names the expert that
    answered, and the difficulty decision shows each rung's score against its threshold."""
    held_out = _ladder_prompts(2, 12)
    answered = []
    for row in held_out:
        trace = _auto_chat(ladder_server, [{"role": "user", "content": row["text"]}])
        (decision,) = [d for d in trace["decisions"] if d["stage"] == "difficulty"]
        assert decision["choice"] == trace["expert"]
        assert decision["scores"]["experts"] == ["tiny", "fast", "powerful"]
        assert len(decision["scores"]["difficulty"]) == len(decision["scores"]["thresholds"]) == 2
        answered.append(trace["expert"])
    labels = [row["label"] for row in held_out]
    assert set(labels) == {"tiny", "fast", "powerful"}
    assert sum(a == b for a, b in zip(answered, labels, strict=True)) >= 11, (answered, labels)


def test_a_short_follow_up_climbs_as_high_as_the_conversation(
    ladder_server: RunningServer,
) -> None:
    """The conversation is scored (its recent user turns), not only the last message."""
    hard = "Derive step by step a mathematical model of chess and prove its stability."
    follow_up = "Say hello about it."
    alone = _auto_chat(ladder_server, [{"role": "user", "content": follow_up}])
    assert alone["expert"] == "tiny"
    conversation = [
        {"role": "user", "content": hard},
        {"role": "assistant", "content": "Let us start with the state space."},
        {"role": "user", "content": follow_up},
    ]
    assert _auto_chat(ladder_server, conversation)["expert"] == "powerful"


@pytest.mark.parametrize(
    ("difficulty", "message"),
    [
        ("{experts: [tiny, fast], small: tiny, large: fast}", "not both"),
        ("{experts: [tiny, fast, powerful], escalate: [0.5]}", "escalate needs 2 shares"),
        ("{experts: [tiny, fast, powerful], escalate: [0.2, 0.5]}", "must not increase"),
        ("{experts: [tiny, tiny]}", "twice"),
        ("{small: tiny}", "both `small` and `large`"),
        ("{experts: [tiny, nobody]}", "difficulty.experts[1]: no model named 'nobody'"),
    ],
)
def test_a_bad_ladder_is_a_config_error_naming_it(difficulty: str, message: str) -> None:
    text = LADDER_CONFIG.replace(
        "{experts: [tiny, fast, powerful]}   # cheapest first; equal shares", difficulty
    )
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(text)


def test_a_fit_for_another_ladder_is_refused_at_start(fitted: Path) -> None:
    """Two LLMs' fit (one rung) on a ladder of three: fit again, says the error."""
    with pytest.raises(ConfigError, match="3 experts, so 2 rungs, but the fitted router has 1"):
        Router(Runtime(parse_config(LADDER_CONFIG)), fitted=FittedRouting.load(fitted))
