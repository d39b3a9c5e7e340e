"""Logging set-up for ``corral serve``: human-readable text, or one JSON object per line
for log shippers, carrying the request's trace id when there is one.

Level and format come from the command line, else ``$CORRAL_LOG_LEVEL`` /
``$CORRAL_LOG_FORMAT``, else the config's ``observe:`` section.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime

from corral.config import ObserveConfig
from corral.observe.trace import active_trace

__all__ = ["JsonFormatter", "configure_logging", "log_settings"]

_LEVELS = ("debug", "info", "warning", "error")
_FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        trace = active_trace()
        if trace is not None:
            entry["trace_id"] = trace.id
        entry |= getattr(record, "fields", None) or {}  # structured extras (request lines)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def log_settings(
    observe: ObserveConfig, level: str | None, environ: Mapping[str, str]
) -> tuple[str, str]:
    """(level, format): the command line's, else the environment's, else the config's."""
    level = (level or environ.get("CORRAL_LOG_LEVEL") or observe.log_level).lower()
    fmt = (environ.get("CORRAL_LOG_FORMAT") or observe.log_format).lower()
    if level not in _LEVELS:
        raise ValueError(f"log level {level!r}: use one of {', '.join(_LEVELS)}")
    if fmt not in _FORMATS:
        raise ValueError(f"log format {fmt!r}: use text or json")
    return level, fmt


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record arrives (test runners swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure_logging(level: str, fmt: str) -> None:
    """corral's stderr handler on the root logger (replacing one set up before); uvicorn's
    loggers propagate to it."""
    handler = _StderrHandler()
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    if fmt == "json":  # progress bars would break the one-object-per-line stream
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers follows it
    root = logging.getLogger()
    for previous in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(previous)
    root.addHandler(handler)
    root.setLevel(level.upper())
