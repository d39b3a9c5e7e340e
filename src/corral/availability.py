"""What ``corral check`` reports per expert: can it serve now, and if not, why and how.

Each expert gets one status: usable now; downloadable (with the bytes, from the Hub's
file list, or by Ollama); needs an extra (the backend's libraries do not import);
upstream unreachable (a short-timeout probe); no weights needed (fitted over HTTP);
a stand-in (the named model has no weights, another serves the id); not on disk;
or not servable by this version. Only the first two counts as "can serve".
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import httpx

from corral.catalog import ResolvedModel, hf_download_command
from corral.config import ModelConfig
from corral.tasks import BACKENDS

__all__ = ["Availability", "Status", "assess", "backend_libraries"]


class Status(StrEnum):
    USABLE = "usable now"
    NO_WEIGHTS = "no weights needed"
    DOWNLOADABLE = "downloadable"
    NEEDS_EXTRA = "needs an extra"
    UNREACHABLE = "upstream unreachable"
    STAND_IN = "stand-in"
    MISSING = "not on disk"
    UNSUPPORTED = "not servable"



def backend_libraries() -> Mapping[str, tuple[tuple[str, ...], str]]:
    """backend -> (libraries it imports, the corral extra that installs them), from the
    families registered now."""
    return {b.name: (b.libraries, b.extra) for b in BACKENDS.values()}


def _weightless(backend: str) -> bool:
    """Fitted over HTTP (or statistical per request): no weights to have."""
    return any(b.weightless for b in BACKENDS.values() if b.name == backend)


@dataclass
class Availability:
    name: str
    model: str
    status: Status
    detail: str
    remedy: str = ""

    @property
    def can_serve(self) -> bool:
        return self.status in (Status.USABLE, Status.NO_WEIGHTS)


def missing_libraries(backend: str) -> tuple[list[str], str]:
    """The backend's libraries that do not import here, and the extra that installs them."""
    modules, extra = backend_libraries().get(backend, ((), ""))
    missing = []
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception:  # ImportError, or a broken native library (OSError)
            missing.append(module)
    return missing, extra


def assess(
    spec: ModelConfig,
    r: ResolvedModel,
    *,
    hub_down: str | None,
    hub_bytes: dict[str, int | str],
    timeout: float = 2.0,
) -> Availability:
    """One expert's status. ``hub_down`` says why the Hub cannot be asked (None: it can);
    ``hub_bytes`` holds, per expert, the bytes a download needs or why it cannot."""
    from corral.experts.registry import REGISTRY

    def result(status: Status, detail: str, remedy: str = "") -> Availability:
        return Availability(spec.name, spec.model, status, detail, remedy)

    if r.task is None:
        return result(Status.UNSUPPORTED, "cannot tell what this model does", "set `task:`")
    if r.backend is None or (r.task, r.backend) not in REGISTRY:
        known = sorted(b for t, b in REGISTRY if t == r.task)
        return result(
            Status.UNSUPPORTED,
            f"no {r.task.value} backend {r.backend or '(none known)'} in this version",
            f"set `backend:` to one of: {', '.join(known)}",
        )
    missing, extra = missing_libraries(r.backend)
    if missing:
        return result(
            Status.NEEDS_EXTRA,
            f"backend {r.backend} needs {', '.join(missing)}, which do not import here",
            f"pip install 'corral[{extra}]'",
        )
    if r.base_url is not None:
        return _upstream(spec, r, result, timeout)
    if r.stand_in is not None:
        return result(Status.STAND_IN, r.note, f"set `model: {r.stand_in}` to name what serves")
    if _weightless(r.backend):
        return result(Status.NO_WEIGHTS, f"{r.backend}: fitted over HTTP, no weights to fetch")
    if r.found:
        return result(Status.USABLE, f"weights at {r.path}")
    if r.repo is None:
        return result(Status.MISSING, "no weights on disk, and none on the Hub to fetch", r.hint)
    fetch = f"`corral pull` (or `{hf_download_command(r.repo, spec)}`)"
    if hub_down is not None:
        return result(
            Status.MISSING,
            f"not in the Hugging Face cache, and {hub_down}",
            f"{fetch} on a machine with Hub access, or set `path:` to a local copy",
        )
    needed = hub_bytes.get(spec.name)
    if isinstance(needed, int):
        return result(Status.DOWNLOADABLE, f"{r.repo}: {_size(needed)} to fetch", fetch)
    fix = "fix the id or `revision:`, or set `path:`"
    return result(Status.MISSING, f"{r.repo}: {needed}", fix)


def _upstream(spec: ModelConfig, r: ResolvedModel, result, timeout: float) -> Availability:  # type: ignore[no-untyped-def]
    from corral.pull.ollama import ollama_has, ollama_unreachable

    assert r.base_url is not None
    if r.backend == "ollama":
        model = str(spec.options.get("upstream_model", spec.model))
        why = ollama_unreachable(r.base_url, timeout)
        if why is not None:
            return result(
                Status.UNREACHABLE,
                why,
                f"start Ollama (`ollama serve`), then `corral pull` has it pull {model}",
            )
        try:
            present = ollama_has(r.base_url, model, timeout)
        except (httpx.HTTPError, ValueError) as exc:
            return result(Status.UNREACHABLE, f"Ollama at {r.base_url}: {exc}", "check Ollama")
        if present:
            return result(Status.USABLE, f"Ollama at {r.base_url} has {model}")
        return result(Status.DOWNLOADABLE, f"Ollama at {r.base_url} lacks {model}", "`corral pull`")
    why = upstream_unreachable(r.base_url, timeout)
    if why is not None:
        return result(Status.UNREACHABLE, why, "start the upstream, or fix `base_url:`")
    return result(Status.USABLE, f"upstream {r.base_url} answers")


def upstream_unreachable(base_url: str, timeout: float = 2.0) -> str | None:
    """None when an OpenAI-compatible upstream answers at all (any HTTP status)."""
    try:
        httpx.get(base_url.rstrip("/") + "/models", timeout=timeout)
    except httpx.HTTPError as exc:
        return f"upstream {base_url} is unreachable ({type(exc).__name__})"
    return None


def _size(count: int) -> str:
    from corral.pull.progress import human_bytes

    return human_bytes(count)
