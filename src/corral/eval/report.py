"""``corral eval`` output: a table on the terminal, ``eval.json``, and a quality-cost plot
as ``eval.png`` and a self-contained ``eval.html`` (inline SVG, no CDN)."""

from __future__ import annotations

import html
import io
import json
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from corral.eval.replay import RouteReport

__all__ = ["print_table", "write_files"]


_COLUMNS = ("route", "accuracy", "macro F1", "p50 ms", "p95 ms", "s/item", "escalated")


def _cells(r: RouteReport) -> list[str]:
    return [
        r.route,
        f"{r.accuracy:.3f}",
        f"{r.macro_f1:.3f}",
        f"{r.p50_ms:.1f}",
        f"{r.p95_ms:.1f}",
        f"{r.seconds_per_item:.3f}",
        f"{r.escalated:.1%}",
    ]


def print_table(reports: list[RouteReport], console: Console, title: str) -> None:
    table = Table(title=title)
    for column in _COLUMNS:
        table.add_column(column, justify="left" if column == "route" else "right")
    for r in reports:
        table.add_row(*_cells(r))
    console.print(table)


def write_files(reports: list[RouteReport], out: Path, title: str) -> list[Path]:
    """eval.json, eval.png and eval.html in ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "eval.json", out / "eval.png", out / "eval.html"]
    paths[0].write_text(json.dumps([asdict(r) for r in reports], indent=2) + "\n")
    figure = _plot(reports, title)
    figure.savefig(paths[1], dpi=120, bbox_inches="tight")
    svg = io.StringIO()
    figure.savefig(svg, format="svg", bbox_inches="tight")
    paths[2].write_text(_page(reports, title, svg.getvalue()), encoding="utf-8")
    return paths


def _plot(reports: list[RouteReport], title: str):  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4))
    axes = figure.subplots()
    for r in reports:
        axes.scatter(r.seconds_per_item, r.accuracy, s=60)
        axes.annotate(
            r.route, (r.seconds_per_item, r.accuracy), xytext=(6, 4), textcoords="offset points"
        )
    axes.set_xscale("log")
    axes.set_xlabel("cost: seconds per item (log)")
    axes.set_ylabel("accuracy")
    axes.set_ylim(0, 1.05)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    return figure


def _page(reports: list[RouteReport], title: str, svg: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in _COLUMNS)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in _cells(r)) + "</tr>" for r in reports
    )
    svg_body = svg[svg.find("<svg") :]  # drop the XML prologue for inline use
    return (
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}</style>"
        f"<h1>{html.escape(title)}</h1><table><tr>{head}</tr>{rows}</table>{svg_body}"
    )
