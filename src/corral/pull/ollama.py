"""Ollama models are pulled by the Ollama server itself (``POST /api/pull``, streamed
progress), never by corral re-implementing Ollama's registry protocol."""

from __future__ import annotations

import json
from typing import Any

import httpx

from corral.pull.errors import DownloadError
from corral.pull.progress import PullProgress

__all__ = ["ollama_has", "ollama_unreachable", "pull_ollama"]


def ollama_unreachable(base_url: str, timeout: float = 2.0) -> str | None:
    """None when Ollama answers ``/api/tags``, else why not."""
    try:
        httpx.get(base_url.rstrip("/") + "/api/tags", timeout=timeout).raise_for_status()
    except httpx.HTTPStatusError as exc:
        return f"Ollama at {base_url} answered HTTP {exc.response.status_code} to /api/tags"
    except httpx.HTTPError as exc:
        name = type(exc).__name__
        return f"Ollama at {base_url} is unreachable ({name}); is `ollama serve` running?"
    return None


def ollama_has(base_url: str, model: str, timeout: float = 5.0) -> bool:
    """Whether the Ollama server already holds ``model`` (``name:tag``)."""
    reply = httpx.get(base_url.rstrip("/") + "/api/tags", timeout=timeout)
    reply.raise_for_status()
    names = {str(m.get(key)) for m in reply.json().get("models", []) for key in ("name", "model")}
    return model in names or (":" not in model and f"{model}:latest" in names)


def pull_ollama(expert: str, base_url: str, model: str, progress: PullProgress) -> int:
    """Have Ollama pull ``model``; shows its layer progress; returns the bytes it pulled."""
    url = base_url.rstrip("/") + "/api/pull"
    bars: dict[str, tuple[Any, int]] = {}
    total = 0
    try:
        with httpx.stream(
            "POST", url, json={"model": model, "stream": True}, timeout=httpx.Timeout(30, read=600)
        ) as reply:
            if reply.status_code >= 400:
                reply.read()
                raise _pull_error(expert, model, url, reply.status_code, _error_text(reply.text))
            for line in reply.iter_lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("error"):
                    raise _pull_error(expert, model, url, reply.status_code, str(event["error"]))
                total += _advance(bars, event, model, progress)
                if event.get("status") == "success":
                    break
            else:
                raise _pull_error(expert, model, url, reply.status_code, "stream ended early")
    except httpx.HTTPError as exc:
        cause = f"{type(exc).__name__}: {exc}"
        message = f"expert {expert!r}: Ollama pull of {model} at {url}: {cause}"
        raise DownloadError(message) from None
    finally:
        for bar, _ in bars.values():
            bar.close()
    return total


def _advance(
    bars: dict[str, tuple[Any, int]], event: dict[str, Any], model: str, progress: PullProgress
) -> int:
    """Move the bar of the layer ``event`` is about; returns bytes newly completed."""
    digest, size = event.get("digest"), event.get("total")
    if not digest or not size:
        status = event.get("status")
        if status and not str(status).startswith("pulling"):
            progress.say(f"  ollama: {status}", markup=False)
        return 0
    if digest not in bars:
        bars[digest] = (progress.bar_class(f"{model} {str(digest)[:19]}")(total=int(size)), 0)
    bar, done = bars[digest]
    completed = int(event.get("completed") or 0)
    if completed > done:
        bar.update(completed - done)
        bars[digest] = (bar, completed)
        if completed >= int(size):
            bar.close()  # the layer is in: its line now, not at the end of the pull
    return max(0, completed - done)


def _error_text(body: str) -> str:
    try:
        return str(json.loads(body).get("error") or body)
    except (ValueError, AttributeError):
        return body.strip()[:300]


def _pull_error(expert: str, model: str, url: str, status: int, error: str) -> DownloadError:
    hint = "; check the name and tag on ollama.com/library" if "not" in error.lower() else ""
    return DownloadError(
        f"expert {expert!r}: Ollama could not pull {model!r}: POST {url} answered "
        f"HTTP {status}: {error}{hint}"
    )
