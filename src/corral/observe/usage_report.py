"""``corral usage``: the usage store as a table (or JSON), read straight from its file."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from corral.observe.usage import Group, UsageStore

__all__ = ["print_usage"]


def print_usage(path: Path, by: Group, *, since: float | None, as_json: bool) -> None:
    """Sums per ``by`` from ``since`` on, with the LLM-alone cost beside the actual."""
    if not path.exists():
        raise FileNotFoundError(f"no usage recorded yet: {path} does not exist")
    store = UsageStore(path)
    try:
        rows, totals = store.report(by, since=since), store.totals(since=since)
    finally:
        store.close()
    if as_json:
        print(json.dumps({"group_by": by, "data": rows, "totals": totals}, indent=2))
        return
    table = Table(
        by,
        "requests",
        "errors",
        "compute s",
        "tokens in/out",
        "cost",
        "LLM alone",
        "cheaper by",
        title=f"corral usage ({path})",
    )
    for row in [*rows, {by: "[bold]total[/]", **totals}]:
        table.add_row(
            str(row[by] or "-"),
            f"{row['requests']:,}",
            f"{row['errors']:,}",
            f"{row['compute_seconds']:.2f}",
            f"{row['tokens_in']:,}/{row['tokens_out']:,}",
            f"{row['cost']:.3g}",
            f"{row['llm_only_cost']:.3g}",
            _cheaper_by(row),
        )
    Console().print(table)


def _cheaper_by(row: Mapping[str, Any]) -> str:
    """The LLM-alone cost over the actual, where both are known."""
    if not row["llm_only_requests"] or not row["cost"]:
        return "-"
    return f"{row['llm_only_cost'] / row['cost']:.1f}x"
