"""``corral pull``: fetch what a config's experts need, through the real clients.

Hugging Face ids go through ``huggingface_hub`` into the standard cache (``hub.py``);
Ollama ids are pulled by the Ollama server (``ollama.py``). Experts whose weights ship
in a package, need none, or live behind another upstream have nothing to fetch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.markup import escape

from corral.catalog import ResolvedModel
from corral.config import Config, ModelConfig
from corral.pull.errors import DownloadError
from corral.pull.hub import HubSettings, HubSource, fetch_from_hub, hub_reachable, plan_hub
from corral.pull.ollama import ollama_has, ollama_unreachable, pull_ollama
from corral.pull.progress import PullProgress, human_bytes

__all__ = [
    "DownloadError",
    "HubSettings",
    "PullProgress",
    "PullResult",
    "hub_source",
    "in_folder",
    "pull_config",
    "pull_expert",
]


@dataclass
class PullResult:
    name: str
    ok: bool
    summary: str  # one line: what was fetched, the bytes and where it lives (or why not)
    fetched_bytes: int = 0


def hub_source(spec: ModelConfig, resolved: ResolvedModel) -> HubSource | None:
    """The hub repo and revision an expert's files come from, if any."""
    if resolved.repo is None or resolved.backend is None:
        return None
    return HubSource(spec.name, resolved.repo, resolved.backend, spec.revision, spec.options)


def pull_expert(
    spec: ModelConfig,
    resolved: ResolvedModel,
    settings: HubSettings,
    progress: PullProgress,
    *,
    verify: bool = True,
) -> PullResult:
    """Fetch one expert's files if any are missing. ``verify`` also asks the Hub about a
    copy already in its cache (completing an interrupted one); without it, anything on
    disk is taken as is (``serve`` starts without touching the network then)."""
    name = spec.name
    if resolved.backend == "ollama" and resolved.base_url:
        return _pull_ollama(spec, resolved.base_url, progress)
    source = hub_source(spec, resolved)
    if source is None:
        return PullResult(name, resolved.found, _nothing_to_fetch(resolved))
    cached = in_folder(resolved.path, settings.cache_dir)
    if resolved.found and not (verify and cached):
        return PullResult(name, True, f"already on disk: {resolved.path}")
    if settings.offline:
        if resolved.found:
            return PullResult(name, True, f"in the cache (HF_HUB_OFFLINE): {resolved.path}")
        return PullResult(name, False, f"not in {settings.cache_dir} and HF_HUB_OFFLINE is set")
    try:
        plan = plan_hub(source, settings)
    except DownloadError as exc:
        if resolved.found:  # a cached copy and a Hub we cannot ask: keep the copy
            unverified = f"in the cache, not verified ({exc.message}): {resolved.path}"
            return PullResult(name, True, unverified)
        return PullResult(name, False, exc.message)
    note = f"; {plan.note}" if plan.note else ""
    if not plan.missing:
        return PullResult(
            name,
            True,
            f"up to date: {len(plan.sizes)} files, {human_bytes(plan.total_bytes)} in "
            f"{plan.snapshot(settings)}{note}",
        )
    progress.say(
        f"[bold]{name}[/] ({escape(source.repo)}): fetching {len(plan.missing)} of "
        f"{len(plan.sizes)} "
        f"files, {human_bytes(plan.missing_bytes)}{note}"
    )
    try:
        location = fetch_from_hub(plan, settings, progress)
    except DownloadError as exc:
        return PullResult(name, False, exc.message)
    return PullResult(
        name,
        True,
        f"fetched {len(plan.missing)} files, {human_bytes(plan.missing_bytes)} -> {location}{note}",
        plan.missing_bytes,
    )


def _pull_ollama(spec: ModelConfig, base_url: str, progress: PullProgress) -> PullResult:
    model = str(spec.options.get("upstream_model", spec.model))
    why = ollama_unreachable(base_url)
    if why is not None:
        return PullResult(spec.name, False, f"{why}; start Ollama, then `corral pull` {model}")
    try:
        if ollama_has(base_url, model):
            return PullResult(spec.name, True, f"already in Ollama at {base_url}: {model}")
        progress.say(f"[bold]{spec.name}[/]: Ollama at {escape(base_url)} pulls {escape(model)}")
        pulled = pull_ollama(spec.name, base_url, model, progress)
    except DownloadError as exc:
        return PullResult(spec.name, False, exc.message)
    except Exception as exc:  # a malformed reply: say what it was
        return PullResult(spec.name, False, f"Ollama at {base_url}: {type(exc).__name__}: {exc}")
    return PullResult(
        spec.name, True, f"pulled {model} into Ollama at {base_url} ({human_bytes(pulled)})", pulled
    )


def _nothing_to_fetch(resolved: ResolvedModel) -> str:
    if resolved.base_url is not None:
        return f"upstream {resolved.base_url}: nothing to fetch"
    if resolved.found:
        return f"nothing to fetch: {resolved.weights}"
    return f"cannot be fetched: {resolved.hint or resolved.note or 'no source known'}"


def in_folder(path: Path | None, folder: Path) -> bool:
    """Whether ``path`` lies inside ``folder`` (the Hub cache, say)."""
    if path is None:
        return False
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def pull_config(
    config: Config,
    resolved: Sequence[ResolvedModel],
    env: Mapping[str, str],
    progress: PullProgress,
    *,
    names: Sequence[str] = (),
    verify: bool = True,
) -> list[PullResult]:
    """Pull every expert (or those ``names``); the Hub is probed once, briefly, so an
    unreachable Hub costs one short timeout and one message, not one per expert."""
    settings = HubSettings.from_env(env)
    chosen = [
        (spec, r) for spec, r in zip(config.models, resolved, strict=True)
        if not names or spec.name in names
    ]
    needs_hub = [
        spec.name
        for spec, r in chosen
        if hub_source(spec, r) is not None and (verify or not r.found)
    ]
    down = hub_reachable(settings) if needs_hub and not settings.offline else None
    results = []
    for spec, r in chosen:
        if down is not None and spec.name in needs_hub and not r.found:
            results.append(PullResult(spec.name, False, f"cannot download {r.repo}: {down}"))
            continue
        results.append(pull_expert(spec, r, settings, progress, verify=verify and down is None))
    progress.close()
    return results
