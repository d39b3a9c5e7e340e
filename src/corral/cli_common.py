"""What every ``corral`` command shares: loading the config (problems printed with their
lines) and saying in one line why a command failed."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from corral.config import Config, default_config, load_config
from corral.errors import ConfigError, CorralError

__all__ = ["failed", "load_or_report"]


def load_or_report(path: Path | None) -> Config | None:
    try:
        return load_config(path) if path else default_config()
    except ConfigError as exc:
        err = Console(stderr=True)
        err.print(f"[bold red]invalid config[/] {exc.source}:", highlight=False)
        for problem in exc.problems:
            err.print(f"  {problem}", highlight=False, markup=False)
        return None


def failed(command: str, exc: Exception) -> int:
    """Say why a command failed, in one line (a CorralError's message, not its repr)."""
    message = exc.message if isinstance(exc, CorralError) else str(exc)
    Console(stderr=True).print(f"[red]{command} failed:[/] {message}", highlight=False)
    return 1
