"""Soak (bounded): mixed traffic, bad requests included, at concurrency 32 for about two
minutes against `corral serve` on the default config. No errors, and RSS grows by less
than 5% after warm-up. The same driver runs longer as `bench/soak.py`."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from ._server import serve_process

_SOAK_SECONDS = float(os.environ.get("CORRAL_SOAK_SECONDS", "100"))


def _driver() -> ModuleType:
    path = Path(__file__).parents[1] / "bench" / "soak.py"
    spec = importlib.util.spec_from_file_location("corral_bench_soak", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def test_soak_mixed_traffic_at_concurrency_32(tmp_path: Path) -> None:
    soak = _driver()
    config = (Path(__file__).parents[1] / "src" / "corral" / "default.yaml").read_text()
    with serve_process(config, tmp_path) as url:
        result = asyncio.run(soak.soak(url, url.pid, seconds=_SOAK_SECONDS, concurrency=32))
    print(soak.describe(result))
    if result.errors:
        print((tmp_path / "server.log").read_text(errors="replace")[-6000:])
    assert result.requests > 500
    assert result.errors == 0, soak.describe(result)
    assert result.rss_growth < 0.05, soak.describe(result)
