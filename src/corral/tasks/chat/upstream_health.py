"""Upstream experts (Ollama, OpenAI-compatible servers) load without a network call, so
the server probes them: at start and every ``interval`` seconds, one short request each.
An upstream that does not answer shows as unavailable in /readyz and /v1/models until
it answers again (any HTTP status counts as an answer; only no connection does not)."""

from __future__ import annotations

import asyncio
import logging

import httpx

from corral.runtime import ExpertHandle, ExpertHost

__all__ = ["probe_upstreams", "watch_upstreams"]

log = logging.getLogger("corral.server")


async def probe_upstreams(runtime: ExpertHost, timeout: float = 2.0) -> None:
    handles = [h for h in runtime.handles.values() if h.resolved.base_url is not None]
    if not handles:
        return
    async with httpx.AsyncClient(timeout=timeout) as client:
        await asyncio.gather(*(_probe(client, h) for h in handles))


async def watch_upstreams(runtime: ExpertHost, interval: float = 10.0) -> None:
    while True:
        await asyncio.sleep(interval)
        await probe_upstreams(runtime)


async def _probe(client: httpx.AsyncClient, handle: ExpertHandle) -> None:
    base = (handle.resolved.base_url or "").rstrip("/")
    url = base + ("/api/tags" if handle.resolved.backend == "ollama" else "/models")
    try:
        reply = await client.get(url)
        error = _ollama_lacks(handle, reply) if handle.resolved.backend == "ollama" else ""
    except httpx.HTTPError as exc:
        error = f"expert {handle.name!r}: upstream {base} is unreachable ({type(exc).__name__})"
    if error and error != handle.upstream_error:
        log.warning("%s", error)
    elif not error and handle.upstream_error:
        log.info("expert %r: upstream %s answers again", handle.name, base)
    handle.upstream_error = error


def _ollama_lacks(handle: ExpertHandle, reply: httpx.Response) -> str:
    """An Ollama that answers but does not hold the model cannot serve it either."""
    model = str(handle.spec.options.get("upstream_model", handle.spec.model))
    try:
        tags = reply.json() if reply.status_code == 200 else None
        if not isinstance(tags, dict) or not isinstance(tags.get("models"), list):
            return ""  # not Ollama's tag list: reachable is all we can tell
        held = {str(m.get(k)) for m in tags["models"] for k in ("name", "model")}
    except (ValueError, AttributeError):
        return ""
    if model in held or f"{model}:latest" in held:
        return ""
    base = handle.resolved.base_url
    return f"expert {handle.name!r}: Ollama at {base} does not have {model}; `corral pull` it"
