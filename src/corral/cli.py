"""``corral serve | pull | check | models | ask | eval | route fit``.

With no config file, ``serve``, ``check`` and ``models`` use the built-in default
(models shipped in PyPI packages; runs offline on a laptop CPU).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from corral import __version__
from corral.catalog import CATALOG, ResolvedModel, resolve
from corral.cli_common import failed, load_or_report
from corral.cli_eval import eval_command, route_fit_command
from corral.config import Config, default_config
from corral.errors import CorralError

if TYPE_CHECKING:
    from corral.routing.calibration import FittedRouting

__all__ = ["main"]

_TASK_PATHS = {
    "chat": "/v1/chat/completions",
    "embed": "/v1/embeddings",
    "rerank": "/v1/rerank",
    "classify": "/v1/classify",
    "ner": "/v1/ner",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    return int(args.handler(args) or 0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="corral", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"corral {__version__}")
    sub = parser.add_subparsers(metavar="COMMAND")

    serve = sub.add_parser("serve", help="serve a config over HTTP (built-in default if none)")
    serve.add_argument("config", nargs="?", type=Path, help="YAML config file")
    serve.add_argument("--host", help="bind address (default: server.host, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: server.port, 8000)")
    serve.add_argument(
        "--strict", action="store_true", help="refuse to start if any expert's weights are missing"
    )
    serve.add_argument("--log-level", default=None, choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--offline", action="store_true", help="download nothing; serve what is on disk"
    )
    serve.add_argument(
        "--engine",
        choices=["embedded", "ray"],
        help="where experts run (default: runtime.engine): this process, or Ray Serve",
    )
    serve.set_defaults(handler=_serve)

    check = sub.add_parser(
        "check", help="validate a config; say per expert whether it can serve now, and why not"
    )
    check.add_argument("config", nargs="?", type=Path)
    check.add_argument(
        "--strict", action="store_true", help="exit 1 unless every expert can serve now"
    )
    check.set_defaults(handler=_check)

    pull = sub.add_parser(
        "pull", help="download what a config's experts need (Hugging Face cache, Ollama)"
    )
    pull.add_argument("config", nargs="?", help="YAML config file (built-in default if none)")
    pull.add_argument("names", nargs="*", help="only these experts")
    pull.set_defaults(handler=_pull)

    models = sub.add_parser("models", help="list a config's experts, or the catalog")
    models.add_argument("config", nargs="?", type=Path)
    models.add_argument("--catalog", action="store_true", help="list the model ids corral knows")
    models.set_defaults(handler=_models)

    ask = sub.add_parser(
        "ask", help="ask a running server: a prompt through the coordinator, or one task"
    )
    ask.add_argument("text", nargs="+", help="the prompt; for rerank: the query, then documents")
    ask.add_argument(
        "--task",
        choices=sorted(_TASK_PATHS),
        default="chat",
        help="default chat: the coordinator (model 'auto') answers",
    )
    ask.add_argument("--labels", help="comma-separated labels (classify)")
    ask.add_argument("--max-tokens", type=int, help="cap on generated tokens (chat)")
    ask.add_argument("--model", help="expert name (default: the task's default expert)")
    ask.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL")
    ask.add_argument("--api-key", default=None, help="API key, if the server requires one")
    ask.set_defaults(handler=_ask)

    evaluate = sub.add_parser(
        "eval", help="replay a labelled JSONL through routes of a running server, side by side"
    )
    evaluate.add_argument(
        "data", nargs="?", type=Path, help='JSONL: {"text": ..., "label": ...} per line'
    )
    evaluate.add_argument("--routes", help="comma-separated models: classifiers, LLMs, cascades")
    evaluate.add_argument(
        "--from-shadow", type=Path, help="summarise a shadow log (routing.shadow.log) instead"
    )
    evaluate.add_argument(
        "--routing",
        action="store_true",
        help='chat routing: DATA is {"text", "expert"} JSONL (default: the shipped dev set)',
    )
    evaluate.add_argument("--config", type=Path, help="--routing: config (default: built-in)")
    evaluate.add_argument("--out", type=Path, default=Path("corral-eval"), help="output folder")
    evaluate.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL")
    evaluate.add_argument("--api-key", default=None, help="API key, if the server requires one")
    evaluate.set_defaults(handler=eval_command)

    route = sub.add_parser("route", help="fit routing state (cascade thresholds) on labelled data")
    route_sub = route.add_subparsers(metavar="ACTION")
    fit = route_sub.add_parser(
        "fit", help="fit a cascade or the difficulty router; saves <config>.fitted.json beside it"
    )
    fit.add_argument("config", type=Path, help="YAML config with the cascade or difficulty")
    fit.add_argument("data", type=Path, help='JSONL: {"text": ..., "label": ...} per line')
    what = fit.add_mutually_exclusive_group(required=True)
    what.add_argument("--cascade", help="cascade name in routing.cascades")
    what.add_argument(
        "--difficulty",
        action="store_true",
        help="routing.difficulty, on prompts labelled with the cheapest capable expert "
        "(or small/large)",
    )
    what.add_argument(
        "--routes",
        action="store_true",
        help="semantic route thresholds, on messages labelled with a route name or none",
    )
    target = fit.add_mutually_exclusive_group()
    target.add_argument("--escalation", type=float, help="cascade: target fraction passed on")
    target.add_argument("--accuracy", type=float, help="cascade: target accuracy of items kept")
    fit.add_argument(
        "--calibration",
        choices=["temperature", "isotonic"],
        default="temperature",
        help="cascade: temperature scaling, or temperature then isotonic regression",
    )
    fit.set_defaults(handler=route_fit_command)

    usage = sub.add_parser("usage", help="cost per day, key, expert or route, vs the LLM alone")
    usage.add_argument("config", nargs="?", type=Path, help="config whose usage store to read")
    usage.add_argument(
        "--by", default="day", choices=["day", "hour", "api_key", "expert", "route", "user"]
    )
    usage.add_argument("--since", help="only the last 30m, 24h, 7d...")
    usage.add_argument("--db", type=Path, help="the usage store (default: the config's)")
    usage.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    usage.set_defaults(handler=_usage)

    key = sub.add_parser("key", help="make a new API key and the sha256 line for the config")
    key.set_defaults(handler=_key)
    return parser


def _resolved(config: Config) -> list[ResolvedModel]:
    return [resolve(spec, config.runtime) for spec in config.models]


def _check(args: argparse.Namespace) -> int:
    config = load_or_report(args.config)
    if config is None:
        return 1
    from corral.check import check_command

    title = str(args.config or "built-in default config")
    return check_command(config, title, Console(), strict=args.strict)


def _pull(args: argparse.Namespace) -> int:
    from corral.pull.command import pull_command

    config_arg, names = args.config, list(args.names)
    if (
        config_arg is not None
        and not Path(config_arg).is_file()
        and not config_arg.endswith((".yaml", ".yml"))
    ):
        config_arg, names = None, [config_arg, *names]  # `corral pull NAME`: the default config
    config = load_or_report(Path(config_arg) if config_arg else None)
    if config is None:
        return 1
    return pull_command(config, names, Console())


def _models(args: argparse.Namespace) -> int:
    console = Console()
    if args.catalog:
        table = Table("model id", "task", "backend", "ships in package", title="catalog")
        for model_id, entry in CATALOG.items():
            table.add_row(model_id, entry.task.value, entry.backend, entry.package or "")
        table.caption = "Ollama-style ids (name:tag) are chat models served by Ollama."
        console.print(table)
        return 0
    config = load_or_report(args.config)
    if config is None:
        return 1
    table = Table("name", "model", "task", "backend", "default", "weights")
    for r in _resolved(config):
        spec = config.model_named(r.name)
        table.add_row(
            r.name,
            r.model,
            r.task.value if r.task else "?",
            r.backend or "?",
            "yes" if spec and spec.default else "",
            r.weights,
        )
    console.print(table)
    return 0


def _fitted(config_path: Path | None, console: Console) -> FittedRouting | None:
    """The routing state `corral route fit` saved beside the config, if any."""
    from corral.routing.calibration import FittedRouting, fitted_path

    if config_path is None or not fitted_path(config_path).exists():
        return None
    console.print(f"routing: fitted state from {fitted_path(config_path)}", highlight=False)
    return FittedRouting.load(fitted_path(config_path))


class _LogFile(io.StringIO):
    """A file for rich that turns each printed line into a log record (for JSON logs)."""

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                logging.getLogger("corral").warning(line)
        return len(text)


def _serve(args: argparse.Namespace) -> int:
    config = load_or_report(args.config)
    if config is None:
        return 1
    from corral.observe.logs import configure_logging, log_settings
    from corral.pull.command import download_for_serve
    from corral.runtime import Runtime
    from corral.server import create_app
    from corral.server.progress import RichLoadProgress
    from corral.server.serving import uvicorn_server

    try:
        level, log_format = log_settings(config.observe, args.log_level, os.environ)
    except ValueError as exc:
        Console(stderr=True).print(f"[red]{exc}[/]", highlight=False)
        return 2
    configure_logging(level, log_format)
    # JSON logs: status lines go through logging too, so every line stays one object
    as_logs = log_format != "text"
    console = Console(stderr=True, file=_LogFile() if as_logs else None, soft_wrap=as_logs)
    download_for_serve(config, console, offline=args.offline)
    runtime = Runtime(config)
    unavailable = [h for h in runtime.handles.values() if h.reason]
    for handle in unavailable:
        console.print(f"[yellow]unavailable[/] {handle.reason}", highlight=False)
    if args.strict and unavailable:
        console.print("[red]--strict: refusing to start with unavailable experts[/]")
        return 1
    fitted = _fitted(args.config, console)
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    if (args.engine or config.runtime.engine) == "ray":
        return _serve_ray(config, host, port, fitted)
    total = len(runtime.handles) - len(unavailable)
    app = create_app(
        config,
        runtime,
        # JSON logs are for machines: no progress bar, the runtime logs each load instead
        listener=RichLoadProgress(console, total=total) if log_format == "text" else None,
        fitted=fitted,
    )
    # bounded at the socket, draining on SIGTERM for server.drain_s (see serving.py)
    uvicorn_server(app, config.server, host=host, port=port, log_level=level).run()
    return 0


def _serve_ray(config: Config, host: str, port: int, fitted: FittedRouting | None) -> int:
    """The same config on Ray Serve: one deployment per expert, the app as ingress."""
    from corral.engines.ray import run  # imports ray itself only when called

    try:
        run(config, host=host, port=port, fitted=fitted)
    except CorralError as exc:
        return failed("serve --engine ray", exc)
    return 0


def _ask(args: argparse.Namespace) -> int:
    import httpx

    body: dict[str, object] = {"model": args.model} if args.model else {}
    if args.task == "chat":
        body = {
            "model": args.model or "auto",
            "messages": [{"role": "user", "content": " ".join(args.text)}],
        }
        if args.max_tokens:
            body["max_tokens"] = args.max_tokens
    elif args.task == "rerank":
        body |= {"query": args.text[0], "documents": args.text[1:], "return_documents": True}
    else:
        body["input"] = " ".join(args.text)
    if args.labels:
        body["labels"] = [label.strip() for label in args.labels.split(",")]
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    try:
        reply = httpx.post(
            args.url.rstrip("/") + _TASK_PATHS[args.task], json=body, headers=headers, timeout=600
        )
    except httpx.HTTPError as exc:
        print(
            f"cannot reach corral at {args.url}: {exc} (is `corral serve` running?)",
            file=sys.stderr,
        )
        return 1
    data = reply.json()
    if args.task == "chat" and reply.is_success:
        _print_answer(data, reply.headers)
    else:
        print(json.dumps(data, indent=2))
    return 0 if reply.is_success else 1


def _print_answer(data: dict[str, Any], headers: Mapping[str, str]) -> None:
    """The answer, then the route it took: why (routing decisions) and what ran (steps)."""
    message = data["choices"][0]["message"]
    if message.get("tool_calls"):
        print(json.dumps(message["tool_calls"], indent=2))
    else:
        print(message.get("content") or "(the model gave an empty answer)")
    route = headers.get("x-corral-route", "direct")
    print(f"\n[route: {route}; answered by {headers.get('x-corral-expert')}]", file=sys.stderr)
    for decision in data.get("corral", {}).get("decisions", []):
        print(f"  {decision['stage']:<11} {decision['reason']}", file=sys.stderr)
    for step in data.get("corral", {}).get("steps", []):
        detail = f" {json.dumps(step['arguments'])}" if step.get("arguments") else ""
        error = f"  error: {step['error']}" if step.get("error") else ""
        took = f"{step['seconds'] * 1000:7.0f} ms"
        print(f"  {step['kind']:<4} {step['name']:<24} {took}{detail}{error}", file=sys.stderr)


def _usage(args: argparse.Namespace) -> int:
    from corral.observe.usage import default_usage_path, parse_since
    from corral.observe.usage_report import print_usage

    config = load_or_report(args.config) if args.config else default_config()
    if config is None:
        return 1
    path = (args.db or config.observe.usage_db or default_usage_path()).expanduser()
    try:
        since = parse_since(args.since) if args.since else None
        print_usage(path, args.by, since=since, as_json=args.json)
    except (CorralError, FileNotFoundError) as exc:
        return failed("usage", exc)
    return 0


def _key(args: argparse.Namespace) -> int:
    """A random key for the client, and its digest for ``server.api_keys`` (no secret
    in the config)."""
    import secrets

    from corral.server.auth import key_digest

    new = "crl-" + secrets.token_urlsafe(32)
    print(f"key (give to the client, shown once): {new}")
    print(f'config:  server: {{api_keys: ["sha256:{key_digest(new)}"]}}')
    return 0


if __name__ == "__main__":
    sys.exit(main())
