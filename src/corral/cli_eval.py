"""``corral eval`` (replay labelled data through routes, or summarise a shadow log) and
``corral route fit`` (cascade thresholds, route thresholds, the difficulty router)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from corral.cli_common import failed, load_or_report
from corral.errors import CorralError

if TYPE_CHECKING:
    from corral.routing.difficulty import DifficultyModel

__all__ = ["eval_command", "route_fit_command"]


def eval_command(args: argparse.Namespace) -> int:
    import asyncio

    import httpx

    from corral.eval.datasets import read_labelled
    from corral.eval.replay import replay
    from corral.eval.report import print_table, write_files

    if args.from_shadow:
        return _eval_shadow(args.from_shadow)
    if args.routing:
        from corral.eval.routing_report import run_routing_eval

        return run_routing_eval(args.data, args.config, args.out)
    if args.data is None or not args.routes:
        Console(stderr=True).print("give a labelled JSONL and --routes, or --from-shadow LOG")
        return 2
    routes = [r.strip() for r in args.routes.split(",") if r.strip()]
    try:
        items = read_labelled(args.data)
        reports = asyncio.run(replay(args.url, routes, items, api_key=args.api_key))
    except (CorralError, OSError, RuntimeError, httpx.HTTPError) as exc:
        return failed("eval", exc)
    title = f"{args.data.name}: {len(items)} items"
    print_table(reports, Console(), title)
    for path in write_files(reports, args.out, title):
        print(f"wrote {path}")
    return 0


def _eval_shadow(path: Path) -> int:
    from corral.eval.shadow import print_shadow_table, summarize_shadow

    try:
        summaries = summarize_shadow(path)
    except (CorralError, OSError) as exc:
        return failed("eval", exc)
    title = f"shadow log {path.name}: answering route vs shadow (p50/p95: answering / shadow)"
    print_shadow_table(summaries, Console(width=120), title)
    return 0


def route_fit_command(args: argparse.Namespace) -> int:
    import asyncio

    from corral.eval.datasets import read_labelled
    from corral.routing.calibration import FittedRouting, fitted_path
    from corral.routing.fit import fit_cascade, fit_difficulty_router, fit_route_thresholds

    config = load_or_report(args.config)
    if config is None:
        return 1
    path = fitted_path(args.config)
    fitted = FittedRouting.load(path) if path.exists() else FittedRouting()
    try:
        examples = read_labelled(args.data)
        if args.routes:
            fitted.route_thresholds = asyncio.run(fit_route_thresholds(config, examples))
            summary = "route thresholds: " + ", ".join(
                f"{name} {value:.3f}" for name, value in fitted.route_thresholds.items()
            )
        elif args.difficulty:
            rungs = asyncio.run(fit_difficulty_router(config, examples))
            fitted.difficulty, *fitted.difficulty_rungs = rungs
            assert config.routing.difficulty is not None  # else the fit raised
            ladder = config.routing.difficulty.ladder
            summary = "\n".join(map(_rung_summary, ladder, rungs))
        else:
            fit = asyncio.run(
                fit_cascade(
                    config,
                    args.cascade,
                    examples,
                    escalation=args.escalation,
                    accuracy=args.accuracy,
                    method=args.calibration,
                )
            )
            fitted.cascades[args.cascade] = fit
            summary = (
                f"{args.cascade}: {fit.method}, temperature {fit.temperature:.3f}, threshold "
                f"{fit.threshold:.3f} ({fit.target}) on {fit.examples} examples: escalates "
                f"{fit.escalation:.1%}, kept accuracy {fit.kept_accuracy:.1%}"
            )
    except (CorralError, OSError) as exc:
        return failed("route fit", exc)
    fitted.save(path)
    print(f"{summary}\nsaved {path}")
    return 0


def _rung_summary(expert: str, rung: DifficultyModel) -> str:
    auc = ", ".join(f"{kind} {value:.3f}" for kind, value in rung.auc.items())
    return (
        f"difficulty past {expert}: kept {rung.kind} (cross-validated AUC: {auc}); "
        f"threshold {rung.threshold:.3f} for {rung.large_share:.0%} past it"
    )
