"""``corral eval --from-shadow``: summarise what shadow mode logged on live traffic.

No gold labels there, so the measure is agreement between the answering route and the
shadow route, with both routes' latency per item.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from corral.errors import InvalidRequest

__all__ = ["ShadowSummary", "print_shadow_table", "summarize_shadow"]


@dataclass(frozen=True)
class ShadowSummary:
    primary: str
    shadow: str
    items: int
    agreement: float
    primary_p50_ms: float
    primary_p95_ms: float
    shadow_p50_ms: float
    shadow_p95_ms: float


def summarize_shadow(path: Path) -> list[ShadowSummary]:
    """One summary per (answering route, shadow route) pair in the log."""
    pairs: dict[tuple[str, str], list[dict[str, object]]] = defaultdict(list)
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            pairs[(str(row["primary"]), str(row["shadow"]))].append(row)
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InvalidRequest(f"{path}:{number}: not a shadow log line ({exc})") from None
    if not pairs:
        raise InvalidRequest(f"{path}: no shadow lines yet (is routing.shadow sampling?)")
    return [_summary(primary, shadow, rows) for (primary, shadow), rows in pairs.items()]


def _summary(primary: str, shadow: str, rows: list[dict[str, object]]) -> ShadowSummary:
    def ms(key: str, q: float) -> float:
        return float(np.percentile([float(r[key]) for r in rows], q)) * 1000  # type: ignore[arg-type]

    return ShadowSummary(
        primary,
        shadow,
        len(rows),
        float(np.mean([bool(r["agree"]) for r in rows])),
        ms("primary_seconds", 50),
        ms("primary_seconds", 95),
        ms("shadow_seconds", 50),
        ms("shadow_seconds", 95),
    )


def print_shadow_table(summaries: list[ShadowSummary], console: Console, title: str) -> None:
    table = Table(title=title)
    for column in ("answering", "shadow", "items", "agreement", "p50 ms", "p95 ms"):
        table.add_column(column, justify="left" if column in ("answering", "shadow") else "right")
    for s in summaries:
        table.add_row(
            s.primary,
            s.shadow,
            str(s.items),
            f"{s.agreement:.1%}",
            f"{s.primary_p50_ms:.1f} / {s.shadow_p50_ms:.1f}",
            f"{s.primary_p95_ms:.1f} / {s.shadow_p95_ms:.1f}",
        )
    console.print(table)
