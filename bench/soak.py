"""Soak: mixed traffic against `corral serve` on the default config, at fixed concurrency
for a bounded time. Counts requests and errors, and the server's RSS after warm-up and at
the end. The CI test (tests/test_soak.py) runs it for about two minutes; run it longer
here and the figures go into RELIABILITY.md.

    python bench/soak.py [--seconds 600] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

_LABELS = ["billing", "bug", "account access", "feature request"]
_TEXTS = [
    "I was charged twice for my subscription this month.",
    "The export button crashes the app on Android.",
    "Tim Cook announced the results in Cupertino on Tuesday.",
    "Please add a dark mode to the dashboard.",
    "I cannot log in since I changed my password.",
]
# (share, path, body, expected status): a few bad requests are part of the mix
_MIX: list[tuple[float, str, Any, int]] = [
    (0.30, "/v1/embeddings", lambda r: {"input": r.sample(_TEXTS, r.randint(1, 4))}, 200),
    (0.20, "/v1/classify", lambda r: {"input": [r.choice(_TEXTS)], "labels": _LABELS}, 200),
    (
        0.15,
        "/v1/rerank",
        lambda r: {"query": "payment problem", "documents": r.sample(_TEXTS, 3)},
        200,
    ),
    (0.15, "/v1/ner", lambda r: {"input": [r.choice(_TEXTS)]}, 200),
    (
        0.10,
        "/v1/chat/completions",
        lambda r: {"messages": [{"role": "user", "content": r.choice(_TEXTS)}], "max_tokens": 8},
        200,
    ),
    (0.05, "/v1/embeddings", lambda r: {"input": []}, 422),
    (0.05, "/v1/classify", lambda r: {"input": ["x"], "labels": "not a list"}, 422),
]


@dataclass
class SoakResult:
    seconds: float
    concurrency: int
    requests: int = 0
    errors: int = 0  # any status other than the one expected, or no response
    statuses: Counter[int] = field(default_factory=Counter)
    rss_after_warmup: int = 0
    rss_end: int = 0
    latencies: list[float] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)  # the first few, to say what broke

    @property
    def rss_growth(self) -> float:
        return self.rss_end / self.rss_after_warmup - 1 if self.rss_after_warmup else 0.0

    @property
    def p95(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[int(0.95 * (len(ordered) - 1))] if ordered else 0.0


def rss_bytes(pid: int) -> int:
    """The server's resident memory and its worker processes' (llama.cpp runs in one)."""
    server = psutil.Process(pid)
    return sum(p.memory_info().rss for p in (server, *server.children(recursive=True)))


async def _client(
    client: httpx.AsyncClient, seed: int, until: float, result: SoakResult | None
) -> None:
    rng = random.Random(seed)
    shares = [share for share, *_ in _MIX]
    while time.monotonic() < until:
        _, path, body, expected = rng.choices(_MIX, weights=shares)[0]
        started = time.perf_counter()
        payload = body(rng)
        try:
            reply = await client.post(path, json=payload)
            status, text = reply.status_code, reply.text
        except httpx.HTTPError as exc:
            status, text = 0, repr(exc)
        if result is not None and status != expected and len(result.unexpected) < 5:
            result.unexpected.append(f"{status} {path} {payload}: {text[:300]}")
        if result is not None:  # None: warm-up, not counted
            result.requests += 1
            result.errors += status != expected
            result.statuses[status] += 1
            result.latencies.append(time.perf_counter() - started)


async def soak(
    url: str, pid: int, *, seconds: float, concurrency: int, warmup: float = 20.0
) -> SoakResult:
    """Warm up for ``warmup`` s, note RSS, then ``seconds`` of traffic counted."""
    result = SoakResult(seconds, concurrency)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        until = time.monotonic() + warmup
        await asyncio.gather(*(_client(client, i, until, None) for i in range(concurrency)))
        result.rss_after_warmup = rss_bytes(pid)
        until = time.monotonic() + seconds
        await asyncio.gather(
            *(_client(client, 1000 + i, until, result) for i in range(concurrency))
        )
    result.rss_end = rss_bytes(pid)
    return result


def describe(result: SoakResult) -> str:
    mib = 2**20
    return (
        f"{result.requests} requests in {result.seconds:.0f} s at concurrency "
        f"{result.concurrency}: {result.errors} errors (statuses {dict(result.statuses)}), "
        f"p95 {result.p95:.2f} s; RSS {result.rss_after_warmup / mib:.0f} MiB after warm-up, "
        f"{result.rss_end / mib:.0f} MiB at the end ({result.rss_growth:+.1%})"
        + "".join(f"\n  unexpected: {line}" for line in result.unexpected)
    )


def main() -> int:
    sys.path.insert(0, str(Path(__file__).parent))
    from _harness import ROOT, free_port, machine, start, stop, write_section

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as state:
        proc = start(
            [sys.executable, "-m", "corral.cli", "serve", "--port", str(port)],
            f"http://127.0.0.1:{port}/readyz",
            env={"CORRAL_STATE_DIR": state},
        )
        try:
            result = asyncio.run(
                soak(
                    f"http://127.0.0.1:{port}",
                    proc.pid,
                    seconds=args.seconds,
                    concurrency=args.concurrency,
                )
            )
        finally:
            stop(proc)
    line = f"{machine()}, `bench/soak.py --seconds {args.seconds:.0f}`: {describe(result)}"
    print(line)
    write_section("soak", line, file=ROOT / "RELIABILITY.md")
    return 0 if result.errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
