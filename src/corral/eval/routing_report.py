"""``corral eval --routing``: run the routing eval and print/write its report."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from corral.config import default_config, load_config
from corral.errors import CorralError
from corral.eval.routing_eval import (
    RoutingReport,
    dev_set,
    fit_thresholds,
    knn_baseline,
    read_routing,
    route_items,
    split,
)

__all__ = ["compare", "print_report", "run_routing_eval"]


async def compare(config_path: Path | None, data: Path | None) -> list[RoutingReport]:
    """The config's routes on the whole set, then on a held-out half: as configured,
    with thresholds fitted on the other half, and the kNN baseline fitted on it."""
    from corral.routing import Router
    from corral.runtime import Runtime

    config = load_config(config_path) if config_path else default_config()
    items = read_routing(data) if data else dev_set()
    train, test = split(items)
    runtime = Runtime(config)
    try:
        router = Router(runtime)
        await router.prepare()  # load the embedder and embed the route examples first
        whole = await route_items(router, items)
        held_out = await route_items(router, test)
        held_out.method = "corral routes (held-out half)"
        reports = [whole, held_out]
        if router.semantic is not None:
            fitted = await route_items(router, test, await fit_thresholds(router, train))
            fitted.method = "corral routes, thresholds fitted on the other half"
            reports.append(fitted)
        baseline = await knn_baseline(router, train, test)
        baseline.method += " (held-out half)"
        return [*reports, baseline]
    finally:
        await runtime.close()


def print_report(reports: list[RoutingReport], console: Console) -> None:
    summary = Table(title="chat routing")
    for column in ("method", "items", "accuracy", "ms/item"):
        summary.add_column(column)
    for r in reports:
        row = r.to_dict()
        summary.add_row(r.method, str(row["items"]), f"{r.accuracy:.3f}", f"{row['ms_per_item']}")
    console.print(summary)
    for stage, rows in reports[0].confusion().items():
        experts = sorted({p for counts in rows.values() for p in counts} | set(rows))
        table = Table(title=f"{reports[0].method}: stage {stage} (rows expected, columns chosen)")
        table.add_column("expected")
        for expert in experts:
            table.add_column(expert)
        for expected in sorted(rows):
            table.add_row(expected, *[str(rows[expected].get(e, "")) for e in experts])
        console.print(table)


def run_routing_eval(data: Path | None, config: Path | None, out: Path) -> int:
    console = Console()
    try:
        reports = asyncio.run(compare(config, data))
    except (CorralError, OSError) as exc:
        message = exc.message if isinstance(exc, CorralError) else str(exc)
        Console(stderr=True).print(f"[red]eval failed:[/] {message}", highlight=False)
        return 1
    print_report(reports, console)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "routing.json"
    path.write_text(json.dumps([r.to_dict() for r in reports], indent=2) + "\n")
    print(f"wrote {path}")
    return 0
