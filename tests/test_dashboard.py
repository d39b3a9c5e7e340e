"""The dashboard at `/` in headless Chromium (Debian's package, driven by Playwright):
it loads with no request leaving 127.0.0.1, lists the running config's experts, plots
cost against the LLM alone, and drills into a request's trace. Saves a screenshot."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from ._server import RunningServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Chromium: apt-get install chromium (.ci/run installs it)"
)
# the flags a sandboxed, offline, root CI machine needs (no background calls home)
_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def test_dashboard_shows_experts_cost_and_a_trace(
    default_server: RunningServer, tmp_path: Path
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    reply = httpx.post(
        default_server.v1 + "/classify",
        json={"input": ["I was charged twice this month"], "labels": ["billing", "bug"]},
        timeout=60,
    )
    trace_id = reply.headers["x-corral-trace-id"]

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            outside: list[str] = []
            page.on(
                "request",
                lambda r: None if r.url.startswith(default_server.url) else outside.append(r.url),
            )
            page.goto(default_server.url + "/")
            page.wait_for_selector("#experts tbody tr")
            names = page.locator("#experts tbody tr td:first-child").all_inner_texts()
            assert names == [h.name for h in default_server.runtime.handles.values()]
            assert page.locator("#cost-chart path").count() == 2  # corral and the LLM alone

            page.locator(f'#requests tr[data-trace="{trace_id}"]').click()
            page.wait_for_selector("#trace-body table")
            header = page.locator("#trace-id").inner_text()
            assert trace_id[:12] in header and "/v1/classify" in header
            calls = page.locator("#trace-body table").nth(1).inner_text()
            assert "classifier" in calls
            assert page.locator("#trace-chart rect").count() >= 2  # request + expert compute

            shot = Path(os.environ.get("CORRAL_SCREENSHOTS", tmp_path)) / "dashboard.png"
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()
    assert problems == [] and outside == []
