"""``corral check``: validate a config, then say per expert whether it can serve now,
and if not, why and the one thing to do about it."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from corral.availability import Availability, Status, assess
from corral.catalog import ResolvedModel, resolve
from corral.config import Config
from corral.pull import HubSettings, hub_source
from corral.pull.errors import DownloadError
from corral.pull.hub import hub_reachable, plan_hub

__all__ = ["check_command"]

_COLOURS = {
    Status.USABLE: "green",
    Status.NO_WEIGHTS: "green",
    Status.DOWNLOADABLE: "cyan",
    Status.STAND_IN: "yellow",
}


def check_command(config: Config, title: str, console: Console, *, strict: bool) -> int:
    env = os.environ
    resolved = [resolve(spec, config.runtime) for spec in config.models]
    settings = HubSettings.from_env(env)
    wanted = [
        (spec, r)
        for spec, r in zip(config.models, resolved, strict=True)
        if hub_source(spec, r) is not None and not r.found
    ]
    down = hub_reachable(settings) if wanted else None
    needs = _download_sizes(wanted, settings) if wanted and down is None else {}
    results = [
        assess(spec, r, hub_down=down, hub_bytes=needs)
        for spec, r in zip(config.models, resolved, strict=True)
    ]
    _print(results, resolved, title, console)
    can = sum(a.can_serve for a in results)
    stand_ins = sum(a.status == Status.STAND_IN for a in results)
    console.print(
        f"\nconfig is valid; {can} of {len(results)} experts can serve now"
        + _breakdown(results)
        + (f"; {stand_ins} served by a stand-in model" if stand_ins else "")
        + ". `corral serve` starts with what can serve and answers the rest with 503.",
        highlight=False,
        soft_wrap=True,
    )
    return 1 if strict and can < len(results) else 0


def _download_sizes(
    wanted: Sequence[tuple[object, ResolvedModel]], settings: HubSettings
) -> dict[str, int | str]:
    """Bytes each missing expert would fetch (from the Hub's file list), or why not."""
    sizes: dict[str, int | str] = {}
    for spec, r in wanted:
        source = hub_source(spec, r)  # type: ignore[arg-type]
        assert source is not None
        try:
            sizes[source.expert] = plan_hub(source, settings, timeout=5.0).missing_bytes
        except DownloadError as exc:
            sizes[source.expert] = exc.message
    return sizes


def _print(
    results: Sequence[Availability],
    resolved: Sequence[ResolvedModel],
    title: str,
    console: Console,
) -> None:
    table = Table("name", "model", "task", "backend", "status", title=f"corral check: {title}")
    for a, r in zip(results, resolved, strict=True):
        colour = _COLOURS.get(a.status, "red")
        task = r.task.value if r.task else "?"
        backend = r.runtime or r.backend or "?"  # onnxruntime-int8: what will actually run
        row = (a.name, escape(a.model), task, backend, f"[{colour}]{a.status.value}[/]")
        table.add_row(*row)
    console.print(table)
    for a, r in zip(results, resolved, strict=True):
        lines = [f"[bold]{a.name}[/] ({escape(a.model)}): {a.status.value}: {escape(a.detail)}"]
        if not a.can_serve and not r.found and r.looked and r.base_url is None:
            lines += [f"  looked in: {escape(place)}" for place in r.looked]
        if a.remedy:
            lines.append(f"  remedy: {escape(a.remedy)}")
        if r.note and r.note not in (a.detail, a.remedy):
            lines.append(f"  note: {escape(r.note)}")
        for line in lines:
            console.print(line, highlight=False, soft_wrap=True)


def _breakdown(results: Sequence[Availability]) -> str:
    counts: Mapping[Status, int] = {
        s: sum(a.status == s for a in results)
        for s in Status
        if s not in _SERVING and s != Status.STAND_IN
    }
    parts = [f"{n} {status.value}" for status, n in counts.items() if n]
    return f" (not yet: {', '.join(parts)})" if parts else ""


_SERVING = frozenset({Status.USABLE, Status.NO_WEIGHTS})
