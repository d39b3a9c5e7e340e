"""The command-line side of pulling: ``corral pull`` and the download step of ``serve``."""

from __future__ import annotations

import os
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape

from corral.catalog import hf_cache_dir, resolve
from corral.config import Config
from corral.pull import PullProgress, PullResult, in_folder, pull_config

__all__ = ["download_for_serve", "print_results", "pull_command"]


def pull_command(config: Config, names: Sequence[str], console: Console) -> int:
    """``corral pull``: fetch what the experts need; 1 if any could not be made usable."""
    unknown = [n for n in names if config.model_named(n) is None]
    if unknown:
        known = ", ".join(m.name for m in config.models)
        console.print(f"[red]no expert named[/] {', '.join(unknown)} (experts: {known})")
        return 2
    wanted = [config.model_named(n).name for n in names]  # type: ignore[union-attr]
    resolved = [resolve(spec, config.runtime) for spec in config.models]
    results = pull_config(config, resolved, os.environ, PullProgress(console), names=wanted)
    print_results(results, console)
    failed = sum(not r.ok for r in results)
    console.print(
        f"\n{len(results) - failed} of {len(results)} experts have what they need"
        + (f"; {failed} not (see above)" if failed else ""),
        highlight=False,
    )
    return 1 if failed else 0


def download_for_serve(config: Config, console: Console, *, offline: bool) -> None:
    """Before ``serve`` loads anything: fetch what is missing, unless told not to."""
    if offline or config.runtime.download == "never":
        why = "--offline" if offline else "runtime.download: never"
        console.print(f"downloads off ({why}): serving what is on disk", highlight=False)
        return
    resolved = [resolve(spec, config.runtime) for spec in config.models]
    cache = hf_cache_dir(os.environ)
    if all(r.found and r.backend != "ollama" and not in_folder(r.path, cache) for r in resolved):
        return  # everything ships in packages or local folders: no network at all
    # copies in the Hub cache are checked against the Hub's file list (when it answers),
    # so a download interrupted between two files is completed, not loaded half
    results = pull_config(config, resolved, os.environ, PullProgress(console))
    print_results([r for r in results if r.fetched_bytes or not r.ok], console)


def print_results(results: Sequence[PullResult], console: Console) -> None:
    for r in results:
        mark = "[green]ok[/]    " if r.ok else "[red]failed[/]"
        line = f"{mark} [bold]{r.name}[/]: {escape(r.summary)}"
        console.print(line, highlight=False, soft_wrap=True)
