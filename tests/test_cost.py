"""Cost accounting over real HTTP: batch shares, the LLM-only counterfactual, the usage
store (per key, expert, route and day), its survival across restarts, and `corral usage`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from corral.cli import main
from corral.config import parse_config
from corral.observe.cost import LlmRate
from corral.runtime.batcher import MicroBatcher

from ._server import RunningServer, serve

TICKETS = [
    "I was charged twice for my subscription this month",
    "The app crashes whenever I upload a photo",
    "I cannot log in since I changed my password",
]
LABELS = ["billing", "bug", "account access"]


def _trace(server: RunningServer, reply: httpx.Response) -> dict:
    trace_id = reply.headers["x-corral-trace-id"]
    found = httpx.get(f"{server.v1}/traces/{trace_id}")
    assert found.status_code == 200
    return found.json()


def test_a_forward_pass_is_shared_in_proportion_to_items() -> None:
    clock = [0.0]

    def forward(items: list[int]) -> list[int]:
        clock[0] += 0.4  # the pass "takes" 0.4 s on the fake clock
        return [i * 2 for i in items]

    async def run() -> list[tuple[list[int], float]]:
        batcher = MicroBatcher(forward, max_size=8, max_wait_ms=50, clock=lambda: clock[0])
        try:
            return await asyncio.gather(
                batcher.submit_measured([1]), batcher.submit_measured([2, 3, 4])
            )
        finally:
            await batcher.close()

    (one, one_share), (three, three_share) = asyncio.run(run())
    assert (one, three) == ([2], [4, 6, 8])
    assert one_share == pytest.approx(0.1) and three_share == pytest.approx(0.3)


def test_llm_rate_tells_prompt_tokens_from_generated_ones() -> None:
    rate = LlmRate()
    for read, written in [(100, 1), (20, 40), (300, 10), (50, 80)]:
        rate.observe(read, written, read * 0.002 + written * 0.03)
    assert rate.per_token() == pytest.approx((0.002, 0.03))
    assert rate.seconds(1000, 10) == pytest.approx(2.3)


def test_a_batched_request_pays_its_share(minilm_path: Path) -> None:
    config = parse_config(f"""
models:
  - name: embedder
    model: sentence-transformers/all-MiniLM-L6-v2
    path: {minilm_path}
    batch: {{max_size: 64, max_wait_ms: 400}}
observe: {{usage: false}}
""")
    with serve(config) as server:

        async def send_together() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=60) as client:
                return await asyncio.gather(
                    *(
                        client.post(server.v1 + "/embeddings", json={"input": ["text"] * n})
                        for n in (1, 2, 3, 4)
                    )
                )

        replies = asyncio.run(send_together())
        charges = [_trace(server, r)["charges"] for r in replies]
    assert all(len(c) == 1 for c in charges)
    per_item = [c[0]["seconds"] / n for c, n in zip(charges, (1, 2, 3, 4), strict=True)]
    # one forward pass for all four: each pays for its items, at the same per-item price
    assert max(per_item) == pytest.approx(min(per_item), rel=1e-9)
    costs = [c[0]["cost"] for c in charges]
    assert costs[3] == pytest.approx(4 * costs[0], rel=1e-9)


def test_a_small_expert_costs_less_than_the_llm_alone(default_server: RunningServer) -> None:
    reply = httpx.post(
        default_server.v1 + "/classify", json={"input": TICKETS, "labels": LABELS}, timeout=60
    )
    assert reply.status_code == 200
    trace = _trace(default_server, reply)
    assert [c["expert"] for c in trace["charges"]] == ["classifier"]
    assert trace["cost"] == pytest.approx(trace["charges"][0]["cost"])
    read, written = trace["llm_tokens"]
    assert read > sum(len(t) for t in TICKETS) / 4 and written == 4 * len(TICKETS)
    assert trace["counterfactual_cost"] > 3 * trace["cost"] > 0

    chat = httpx.post(
        default_server.v1 + "/chat/completions",
        json={"model": "fast", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8},
        timeout=60,
    )
    llm = _trace(default_server, chat)
    assert llm["counterfactual_cost"] == llm["cost"] > 0  # the LLM alone is what served it
    assert llm["charges"][0]["tokens_out"] == chat.json()["usage"]["completion_tokens"]


def _usage_config(db: Path, keys: list[str | dict[str, str]]) -> str:
    return f"""
models:
  - name: fast
    model: HuggingFaceTB/SmolLM2-135M-Instruct
    default: true
  - name: classifier
    model: sentence-transformers/all-MiniLM-L6-v2
    task: classify
server: {{api_keys: {json.dumps(keys)}}}
observe: {{usage_db: {db}}}
"""


def test_usage_is_kept_per_key_and_survives_restart(tmp_path: Path, capsys) -> None:
    db = tmp_path / "usage.sqlite"
    admin_key = {"key": "ops-secret", "name": "ops", "role": "admin"}  # sees every key's usage
    config = parse_config(_usage_config(db, ["alpha-secret", "beta-secret", admin_key]))
    alpha = {"authorization": "Bearer alpha-secret"}
    beta = {"authorization": "Bearer beta-secret"}
    admin = {"authorization": "Bearer ops-secret"}
    with serve(config) as server:
        for ticket in TICKETS:
            reply = httpx.post(
                server.v1 + "/classify",
                json={"input": [ticket], "labels": LABELS},
                headers=alpha,
                timeout=60,
            )
            assert reply.status_code == 200
        reply = httpx.post(
            server.v1 + "/chat/completions",
            json={
                "model": "fast",
                "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 4,
            },
            headers=beta,
            timeout=60,
        )
        assert reply.status_code == 200
        assert httpx.get(server.v1 + "/usage").status_code == 401

    with serve(config) as server:  # a new process would see the same: it is all in the file
        by_key = httpx.get(server.v1 + "/usage?group_by=api_key", headers=admin).json()
        by_expert = httpx.get(server.v1 + "/usage?group_by=expert&since=1d", headers=admin).json()
        own = httpx.get(server.v1 + "/usage?group_by=api_key", headers=alpha).json()
        bad = httpx.get(server.v1 + "/usage?since=soon", headers=beta)

    assert {r["api_key"]: r["requests"] for r in by_key["data"]} == {
        "key-" + _digest("alpha-secret"): 3,
        "key-" + _digest("beta-secret"): 1,
    }
    assert [r["api_key"] for r in own["data"]] == ["key-" + _digest("alpha-secret")]
    experts = {r["expert"]: r for r in by_expert["data"]}
    assert experts["classifier"]["requests"] == 3 and experts["fast"]["requests"] == 1
    assert experts["classifier"]["llm_only_cost"] > experts["classifier"]["cost"] > 0
    assert by_expert["totals"]["requests"] == 4
    assert bad.status_code == 422 and "since" in bad.json()["error"]["message"]

    assert main(["usage", "--db", str(db), "--by", "expert", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert {r["expert"]: r["requests"] for r in printed["data"]} == {"classifier": 3, "fast": 1}
    assert main(["usage", "--db", str(db)]) == 0
    assert "total" in capsys.readouterr().out
    assert main(["usage", "--db", str(tmp_path / "none.sqlite")]) == 1
    assert "no usage recorded yet" in capsys.readouterr().err


def _digest(key: str) -> str:
    import hashlib

    return hashlib.sha256(key.encode()).hexdigest()[:8]
