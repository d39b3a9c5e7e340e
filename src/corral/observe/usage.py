"""The usage store: each request's cost, summed per hour, API key, expert and route.

An embedded SQLite file in WAL mode, so ``corral usage`` can read it while the server
writes. Writes go through one worker thread (the event loop never waits on the disk)
and are upserts into hourly rows, so the file grows with hours x keys x experts x
routes, not with requests. Reading groups those rows by whatever the caller asks.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from corral.artifacts import default_state_dir
from corral.errors import InvalidRequest
from corral.observe.trace import Trace

__all__ = ["GROUPS", "UsageStore", "default_usage_path", "parse_since"]

Group = Literal["day", "hour", "api_key", "expert", "route", "user"]
GROUPS: tuple[Group, ...] = ("day", "hour", "api_key", "expert", "route", "user")
_SQL_OF_GROUP: Mapping[str, str] = {
    "day": "substr(hour, 1, 10)",
    "hour": "hour",
    "api_key": "api_key",
    "expert": "expert",
    "route": "route",
    "user": "user",
}
_SINCE_UNITS = {"m": 60, "h": 3600, "d": 86400}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    hour TEXT NOT NULL,            -- UTC, 'YYYY-MM-DDTHH'
    api_key TEXT NOT NULL,         -- 'anonymous' or 'key-' + a digest prefix
    expert TEXT NOT NULL,          -- the expert that answered ('' if none did)
    route TEXT NOT NULL,           -- how it was chosen (explicit, default, semantic:..)
    requests INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    seconds REAL NOT NULL,         -- request latency, summed
    compute_seconds REAL NOT NULL,
    tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    cost REAL NOT NULL,
    llm_only_cost REAL NOT NULL,   -- the counterfactual, for requests where it is known
    llm_only_requests INTEGER NOT NULL,
    PRIMARY KEY (hour, api_key, expert, route)
)
"""
_UPSERT = """
INSERT INTO usage VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (hour, api_key, expert, route) DO UPDATE SET
    requests = requests + 1,
    errors = errors + excluded.errors,
    seconds = seconds + excluded.seconds,
    compute_seconds = compute_seconds + excluded.compute_seconds,
    tokens_in = tokens_in + excluded.tokens_in,
    tokens_out = tokens_out + excluded.tokens_out,
    cost = cost + excluded.cost,
    llm_only_cost = llm_only_cost + excluded.llm_only_cost,
    llm_only_requests = llm_only_requests + excluded.llm_only_requests
"""
# the same sums per OpenAI ``user`` (the caller's end user), for requests that name one
_USER_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage_by_user (
    hour TEXT NOT NULL, api_key TEXT NOT NULL, user TEXT NOT NULL,
    requests INTEGER NOT NULL, errors INTEGER NOT NULL, seconds REAL NOT NULL,
    compute_seconds REAL NOT NULL, tokens_in INTEGER NOT NULL, tokens_out INTEGER NOT NULL,
    cost REAL NOT NULL, llm_only_cost REAL NOT NULL, llm_only_requests INTEGER NOT NULL,
    PRIMARY KEY (hour, api_key, user)
)
"""
_USER_UPSERT = _UPSERT.replace("INTO usage", "INTO usage_by_user").replace(
    "(hour, api_key, expert, route)", "(hour, api_key, user)"
).replace("(?, ?, ?, ?, 1,", "(?, ?, ?, 1,")
_SUMS = (
    "SUM(requests) AS requests, SUM(errors) AS errors, SUM(seconds) AS seconds, "
    "SUM(compute_seconds) AS compute_seconds, SUM(tokens_in) AS tokens_in, "
    "SUM(tokens_out) AS tokens_out, SUM(cost) AS cost, SUM(llm_only_cost) AS llm_only_cost, "
    "SUM(llm_only_requests) AS llm_only_requests"
)


def default_usage_path(environ: Mapping[str, str] | None = None) -> Path:
    """``usage.sqlite`` in corral's state directory (``default_state_dir``)."""
    return default_state_dir(environ) / "usage.sqlite"


class UsageStore:
    """Hourly usage rows in SQLite; ``record`` from the server, ``report`` for readers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: a crash loses no committed row
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute(_SCHEMA)
        self._db.execute(_USER_SCHEMA)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="corral-usage")

    def record(self, trace: Trace) -> None:
        """Add a finished request (off the event loop; returns at once)."""
        row = _row(trace)
        self._writer.submit(self._db.execute, _UPSERT, row)
        if trace.user:
            by_user = (row[0], row[1], trace.user, *row[4:])
            self._writer.submit(self._db.execute, _USER_UPSERT, by_user)

    async def flush(self) -> None:
        """Wait until every record so far is written."""
        await asyncio.get_running_loop().run_in_executor(self._writer, lambda: None)

    def report(
        self, group_by: Group = "day", *, since: float | None = None, api_key: str | None = None
    ) -> list[dict[str, Any]]:
        """Sums per ``group_by`` value (oldest first), from ``since`` (a Unix time) on;
        ``api_key``: that key's requests only."""
        column = _SQL_OF_GROUP[group_by]
        table = "usage_by_user" if group_by == "user" else "usage"
        where, params = _where(since, api_key)
        sql = f"SELECT {column} AS {group_by}, {_SUMS} FROM {table} {where} GROUP BY 1 ORDER BY 1"
        return self._query(sql, params)

    def totals(self, *, since: float | None = None, api_key: str | None = None) -> dict[str, Any]:
        where, params = _where(since, api_key)
        rows = self._query(f"SELECT {_SUMS} FROM usage {where}", params)
        return {k: (v or 0) for k, v in rows[0].items()}

    def _query(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        future = self._writer.submit(self._fetch, sql, params)  # reads see every write queued
        return future.result()

    def _fetch(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        cursor = self._db.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._db.close()


_MAX_SINCE_DIGITS = 6  # 999999d is some 2700 years: enough, and no overflow in strftime


def parse_since(text: str, now: float | None = None) -> float:
    """'30m', '24h' or '7d' before now, as a Unix time (clamped at the epoch)."""
    unit = _SINCE_UNITS.get(text[-1:])
    number = text[:-1]
    if unit is None or not number.isascii() or not number.isdigit():
        raise InvalidRequest(
            f"since={text[:40]!r}: give a number and m, h or d, e.g. 24h or 7d", param="since"
        )
    if len(number) > _MAX_SINCE_DIGITS:
        raise InvalidRequest(
            f"since has {len(number)} digits; at most {_MAX_SINCE_DIGITS} (e.g. 365d)",
            param="since",
        )
    start = (now if now is not None else time.time()) - int(number) * unit
    return max(0.0, start)


def _where(since: float | None, api_key: str | None) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if since is not None:
        clauses.append("hour >= ?")
        params.append(_hour(since))
    if api_key is not None:
        clauses.append("api_key = ?")
        params.append(api_key)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), params


def _hour(unix: float) -> str:
    return time.strftime("%Y-%m-%dT%H", time.gmtime(unix))


def _row(trace: Trace) -> tuple[Any, ...]:
    known = trace.counterfactual_cost is not None
    return (
        _hour(trace.started_at),
        trace.api_key or "anonymous",
        trace.expert or "",
        trace.route or "",
        int((trace.status or 500) >= 400),
        trace.seconds or 0.0,
        sum(c.seconds for c in trace.charges),
        sum(c.tokens_in for c in trace.charges),
        sum(c.tokens_out for c in trace.charges),
        trace.cost or 0.0,
        trace.counterfactual_cost if known else 0.0,
        int(known),
    )
