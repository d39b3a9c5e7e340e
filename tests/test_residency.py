"""Memory-budgeted residency: the eviction policy on its own, then real experts over HTTP
under budgets smaller than their sum (evictions, busy and pinned experts kept, the
admission queue's 503, single-flight loads, memory accounting)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from corral.runtime.residency import Residency, Unit

from ._server import serve_process

# --- the policy ------------------------------------------------------------------------


def _unit(name: str, mib: int, reload_s: float, **kw: object) -> Unit:
    unit = Unit(names=[name], device="cpu", loaded={name}, bytes=mib * 2**20, **kw)  # type: ignore[arg-type]
    unit.reload_seconds = reload_s
    return unit


def test_cost_policy_keeps_what_is_dear_to_reload_and_often_used() -> None:
    clock = [0.0]
    policy = Residency("cost", clock=lambda: clock[0])
    llm = _unit("llm", 400, reload_s=8.0)
    ner = _unit("ner", 400, reload_s=0.5)
    embedder = _unit("embedder", 100, reload_s=1.0)
    for _ in range(5):
        clock[0] += 1
        policy.touch(embedder)
    clock[0] += 1
    policy.touch(llm)  # used once, long ago compared with ner below
    clock[0] += 1
    policy.touch(ner)  # the most recent, but cheap to reload
    new = Unit(names=["new"], device="cpu")
    victims = policy.victims(new, [llm, ner, embedder, new], need=300 * 2**20, budget=1024 * 2**20)
    assert victims == [ner]
    lru = Residency("lru")
    # LRU takes the least recently used first, the most used one among them, then the LLM
    assert lru.victims(new, [llm, ner, embedder, new], need=300 * 2**20, budget=1024 * 2**20) == [
        embedder,
        llm,
    ]


def test_lru_policy_takes_the_least_recently_used() -> None:
    clock = [0.0]
    lru = Residency("lru", clock=lambda: clock[0])
    a, b, c = _unit("a", 100, 1.0), _unit("b", 100, 1.0), _unit("c", 100, 1.0)
    for unit in (a, b, c):
        clock[0] += 1
        lru.touch(unit)
    new = Unit(names=["new"], device="cpu")
    assert lru.victims(new, [a, b, c], need=250 * 2**20, budget=400 * 2**20) == [a, b]


def test_busy_and_pinned_units_are_never_victims() -> None:
    policy = Residency("cost")
    busy = _unit("busy", 300, 0.1, active=1)
    pinned = _unit("pinned", 300, 0.1, pinned=True)
    idle = _unit("idle", 100, 50.0)
    new = Unit(names=["new"], device="cpu")
    assert policy.victims(new, [busy, pinned, idle], need=100 * 2**20, budget=700 * 2**20) == [idle]
    # room only by evicting the busy or the pinned one: wait (None), never evict them
    assert policy.victims(new, [busy, pinned, idle], need=300 * 2**20, budget=700 * 2**20) is None


def test_a_count_cap_evicts_even_with_bytes_to_spare() -> None:
    policy = Residency("cost", max_loaded=2)
    a, b = _unit("a", 1, 1.0), _unit("b", 1, 9.0)
    policy.touch(a)
    policy.touch(b)
    new = Unit(names=["new"], device="cpu")
    assert policy.victims(new, [a, b], need=0, budget=None) == [a]


def test_a_count_cap_counts_shared_weights_once() -> None:
    """A second expert on weights already loaded adds no model: nothing is evicted."""
    policy = Residency("lru", max_loaded=1)
    minilm = _unit("embedder", 200, 1.0)
    minilm.names.append("classifier")
    policy.touch(minilm)
    assert policy.victims(minilm, [minilm], need=0, budget=None) == []


_ONE_MODEL = "models:\n  - {name: e, model: sentence-transformers/all-MiniLM-L6-v2}\n"


def test_loads_on_different_devices_do_not_wait_for_each_other() -> None:
    """One placement lock per device; one for all when max_loaded counts across devices."""
    from corral.config import parse_config
    from corral.runtime.placement import Placement

    async def unload(_: object) -> None:
        return None

    async def run(max_loaded: str) -> tuple[bool, bool]:
        config = parse_config(f"{_ONE_MODEL}runtime: {{{max_loaded}}}\n")
        placement = Placement(config, {}, unload, lambda: None)
        async with placement.lock_for("cpu"):
            gpu = placement.lock_for("cuda:0")
            gpu_waits = gpu.locked()
            async with asyncio.timeout(1):
                await gpu.acquire()  # does not wait for the CPU load
            gpu.release()
        return gpu_waits, placement.lock_for("cpu") is placement.lock_for("cpu")

    assert asyncio.run(run("")) == (False, True)
    config = parse_config(_ONE_MODEL + "runtime: {max_loaded: 2}\n")
    capped = Placement(config, {}, unload, lambda: None)
    assert capped.lock_for("cpu") is capped.lock_for("cuda:0")


# --- real experts over HTTP ---------------------------------------------------------------

EXPERTS = """
models:
  - name: fast
    model: HuggingFaceTB/SmolLM2-135M-Instruct
    default: true
    {fast_extra}
  - name: embedder
    model: sentence-transformers/all-MiniLM-L6-v2
  - name: ner
    model: spacy/en_core_web_sm
"""


def _config(budget: str | None, *, fast_extra: str = "", runtime_extra: str = "") -> str:
    text = EXPERTS.format(fast_extra=fast_extra)
    runtime = []
    if budget:
        runtime.append(f"memory_budget: {budget}")
    if runtime_extra:
        runtime.append(runtime_extra)
    if runtime:
        text += "runtime: {" + ", ".join(runtime) + "}\n"
    return text + "observe: {usage: false}\n"


@pytest.fixture(scope="module")
def sizes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """Each expert's memory as a fresh `corral serve` measures it at load, no budget."""
    with serve_process(_config(None), tmp_path_factory.mktemp("sizes")) as url:
        experts = httpx.get(url + "/v1/experts").json()["data"]
    measured = {e["name"]: e["memory_bytes"] for e in experts}
    assert all(m and m > 0 for m in measured.values()), measured
    return measured


_GROWTH = """
import asyncio, json, psutil, torch, sentence_transformers, spacy, llama_cpp
from corral.config import parse_config
from corral.runtime import Runtime
runtime = Runtime(parse_config({config!r}))
def rss():  # with the worker processes' (llama.cpp runs isolated in one)
    me = psutil.Process()
    return sum(p.memory_info().rss for p in (me, *me.children(recursive=True)))
before = rss()
asyncio.run(runtime.load_all())
grown = rss() - before
print(json.dumps({{"grown": grown, "measured": [h.memory_bytes for h in runtime.handles.values()]}}))
"""


def test_measured_memory_adds_up_to_the_process_growth() -> None:
    script = _GROWTH.format(config=_config(None))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    total = sum(result["measured"])
    assert abs(total - result["grown"]) <= 0.2 * result["grown"], result


def _mib(n: float) -> str:
    return f"{int(n / 2**20)}MiB"


def _requests() -> list[tuple[str, dict[str, object]]]:
    chat = {"model": "fast", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    return [
        ("/embeddings", {"input": ["budgets keep memory in check"]}),
        ("/ner", {"input": ["Ada Lovelace worked in London."]}),
        ("/chat/completions", chat),
    ]


def _metric(url: str, name: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics").text
    return {
        s.labels["expert"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def _experts(url: str) -> dict[str, dict[str, object]]:
    return {e["name"]: e for e in httpx.get(url + "/v1/experts").json()["data"]}


def _resident(url: str) -> int:
    return sum(int(e["memory_bytes"] or 0) for e in _experts(url).values() if e["state"] == "ready")


def test_a_mixed_workload_fits_a_budget_smaller_than_the_experts(
    sizes: dict[str, int], tmp_path: Path
) -> None:
    largest, smallest = max(sizes.values()), min(sizes.values())
    budget = (largest + smallest) * 1.1  # any two but not all three
    assert budget < sum(sizes.values())
    with serve_process(_config(_mib(budget)), tmp_path) as url:

        async def mixed() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url + "/v1", timeout=120) as client:
                calls = [client.post(path, json=body) for path, body in _requests() * 4]
                return await asyncio.gather(*calls)

        replies = asyncio.run(mixed())
        for path, body in _requests() * 3:  # and round robin, which must evict every time
            replies.append(httpx.post(url + "/v1" + path, json=body, timeout=120))
            assert _resident(url) <= budget
        evictions = _metric(url, "corral_evictions_total")
    assert [r.status_code for r in replies] == [200] * len(replies), [
        r.text for r in replies if r.status_code != 200
    ]
    assert sum(evictions.values()) >= 3


def test_a_busy_expert_is_never_evicted_and_a_full_queue_says_retry(
    sizes: dict[str, int], tmp_path: Path
) -> None:
    budget = max(sizes["fast"], sizes["embedder"]) * 1.15  # one of the two at a time
    with serve_process(
        _config(_mib(budget), runtime_extra="admission_timeout_s: 1.5"), tmp_path
    ) as url:
        streaming = threading.Event()
        finished: list[int] = []

        def long_generation() -> None:
            body = {
                "model": "fast",
                "messages": [{"role": "user", "content": "Tell a long story about a river."}],
                "max_tokens": 400,
                "stream": True,
            }
            with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=120) as r:
                for _ in r.iter_lines():
                    streaming.set()
                finished.append(r.status_code)

        worker = threading.Thread(target=long_generation)
        worker.start()
        assert streaming.wait(60)
        refused = httpx.post(url + "/v1/embeddings", json={"input": ["x"]}, timeout=60)
        fast_state = _experts(url)["fast"]["state"]
        worker.join(120)
        after = httpx.post(url + "/v1/embeddings", json={"input": ["x"]}, timeout=60)
    assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
    assert "serving or pinned" in refused.json()["error"]["message"]
    assert fast_state == "ready" and finished == [200]  # the stream ran to its end
    assert after.status_code == 200  # once the LLM was idle, it made room


def test_pinned_experts_stay(sizes: dict[str, int], tmp_path: Path) -> None:
    budget = (sizes["fast"] + max(sizes["embedder"], sizes["ner"])) * 1.1
    with serve_process(_config(_mib(budget), fast_extra="pin: true"), tmp_path) as url:
        for path, body in _requests()[:2] * 3:  # embed, ner, embed...: they swap places
            assert httpx.post(url + "/v1" + path, json=body, timeout=120).status_code == 200
        evictions = _metric(url, "corral_evictions_total")
        state = _experts(url)["fast"]["state"]
    assert "fast" not in evictions and state == "ready"
    assert evictions.get("embedder", 0) + evictions.get("ner", 0) >= 4


def test_sixteen_concurrent_first_requests_load_once(tmp_path: Path) -> None:
    with serve_process(_config(None, runtime_extra="max_loaded: 1"), tmp_path) as url:
        assert _experts(url)["embedder"]["state"] == "unloaded"  # fast took the only slot

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url + "/v1", timeout=120) as client:
                body = {"input": ["one load for all of us"]}
                calls = [client.post("/embeddings", json=body) for _ in range(16)]
                return await asyncio.gather(*calls)

        replies = asyncio.run(burst())
        loads = _metric(url, "corral_model_load_seconds_count")
    assert [r.status_code for r in replies] == [200] * 16
    assert loads["embedder"] == 1.0
