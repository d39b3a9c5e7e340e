"""``corral serve``'s uvicorn: bounded at the socket, and draining on SIGTERM.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) and caps connections
plus requests (``limit_concurrency``, 503 beyond); ``server.connections`` sets those. The
parser is httptools (llhttp, in C): under 64 one-sentence embedding clients it spends
about a quarter less event-loop time per request than the pure-Python h11 (measured 1.27
-> 0.95 ms on 2 cores). What uvicorn lacks, ``GuardedProtocol`` adds at the protocol,
where a connection is seen before any request is:

* **header timeout**: a request's head must be complete ``header_timeout_s`` after its
  first byte (or after the connection opened); else the connection is closed. Without
  it a client that opens a connection and sends nothing, or a byte now and then, holds
  it forever (uvicorn starts its keep-alive timer only after a response);
* **body timeout**: a request's body must be complete ``body_timeout_s`` after its head;
* **head size**: at most ``max_header_bytes`` received before a request's head is complete
  (llhttp itself bounds nothing); beyond, 431 and closed;
* **per-client cap**: at most ``max_per_client`` open connections per client address;
  the next one is answered 503 and closed, so one client cannot take every connection.

The GIL's switch interval is 0.5 ms instead of CPython's 5 ms. An expert's forward pass
runs on its worker thread, which needs the GIL to start a batch and to hand it back; while
the event loop is busy parsing and answering requests, the worker waited up to the whole
interval for it each time (median 4.2 ms before a batch started, with OpenVINO's threads
idle meanwhile). At 0.5 ms it waits 0.7 ms: measured under 64 one-sentence clients on 2
cores, idle CPU fell from 0.28-0.31 to 0.17-0.20 ms per request and the default embedder
served 737-804 -> 742-829 requests/s, ahead in each of three alternating pairs.

On SIGTERM (or Ctrl+C) uvicorn stops accepting, lets in-flight requests (streams too)
finish for up to ``server.drain_s``, then runs the app's shutdown (which writes the
usage rows still queued). ``DrainingServer`` then exits 0 instead of re-raising the
signal: a drain that finished is a clean exit, not a kill.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from corral.config import ConnectionsConfig, ServerConfig

__all__ = ["DrainingServer", "GuardedProtocol", "guarded_protocol", "uvicorn_server"]

log = logging.getLogger("corral.server")

SWITCH_INTERVAL_S = 0.0005  # how long a thread may hold the GIL while another waits


def _refusal(status: str, message: str, code: str, retry: bool) -> bytes:
    """A complete HTTP response in OpenAI's error shape, written before any app runs."""
    body = json.dumps(
        {"error": {"message": message, "type": "server_error", "param": None, "code": code}}
    ).encode()
    retry_after = "retry-after: 1\r\n" if retry else ""
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{retry_after}"
        f"connection: close\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


_BUSY = _refusal(
    "503 Service Unavailable",
    "too many open connections from this address (server.connections.max_per_client); "
    "close idle ones and retry",
    "too_many_connections",
    retry=True,
)
_HEAD_TOO_LARGE = _refusal(
    "431 Request Header Fields Too Large",
    "the request's head is over server.connections.max_header_bytes; send fewer or "
    "shorter headers",
    "header_too_large",
    retry=False,
)


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the header and body timeouts, the head-size
    bound and the per-client cap. ``guarded_protocol`` makes a subclass per server (its
    own limits and counts)."""

    limits: ConnectionsConfig = ConnectionsConfig()
    open_per_client: Counter[str] = Counter()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._timer: asyncio.TimerHandle | None = None
        self._seen: Any = None  # the request cycle whose head arrived last
        self._head_bytes: int | None = 0  # received of a head not yet complete (None: none)
        self._address = self.client[0] if self.client else ""
        self.open_per_client[self._address] += 1
        if self.open_per_client[self._address] > self.limits.max_per_client:
            log.warning("refused a connection from %s: over max_per_client", self._address)
            transport.write(_BUSY)
            transport.close()
            return
        self._arm(self.limits.header_timeout_s, self._head_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        self.open_per_client[self._address] -= 1
        if self.open_per_client[self._address] <= 0:
            del self.open_per_client[self._address]
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._head_bytes = None
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._head_bytes is not None and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_header_bytes:
                log.info("closed a connection from %s: request head too large", self._address)
                self.transport.write(_HEAD_TOO_LARGE)
                self.transport.close()
                return
        cycle = self.cycle
        if cycle is not self._seen:  # a request's head arrived: now its body is timed
            self._seen = cycle
            self._cancel()
            if cycle.more_body:
                self._arm(self.limits.body_timeout_s, self._body_late)
        elif self._waiting_for_head() and self._timer is None:  # the next request began
            self._arm(self.limits.header_timeout_s, self._head_late)

    def _waiting_for_head(self) -> bool:
        return self.cycle is None or bool(self.cycle.response_complete)

    def _arm(self, delay: float, check: Any) -> None:
        self._cancel()
        self._timer = self.loop.call_later(delay, check)

    def _cancel(self) -> None:
        if getattr(self, "_timer", None) is not None:
            assert self._timer is not None
            self._timer.cancel()
            self._timer = None

    def _head_late(self) -> None:
        self._timer = None
        if self.cycle is self._seen and self._waiting_for_head():
            self._close("no complete request head", self.limits.header_timeout_s)

    def _body_late(self) -> None:
        self._timer = None
        cycle = self.cycle
        if cycle is self._seen and cycle.more_body and not cycle.response_complete:
            self._close("request body incomplete", self.limits.body_timeout_s)

    def _close(self, what: str, after: float) -> None:
        if not self.transport.is_closing():
            log.info("closed a connection from %s: %s after %gs", self._address, what, after)
            self.transport.close()


def guarded_protocol(limits: ConnectionsConfig) -> type[GuardedProtocol]:
    """A protocol class for one server: these limits, its own per-address counts."""
    attributes = {"limits": limits, "open_per_client": Counter()}
    return type("GuardedProtocol", (GuardedProtocol,), attributes)


class DrainingServer(uvicorn.Server):
    """uvicorn's server, exiting normally once a SIGTERM's drain is done."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            try:
                yield
            finally:
                # uvicorn re-raises the signal it drained for; the drain is done, exit 0
                captured = getattr(self, "_captured_signals", None)
                if captured:
                    log.info("drained; exiting")
                    captured.clear()


def uvicorn_server(
    app: Any, server: ServerConfig, *, host: str, port: int, log_level: str | None = None
) -> DrainingServer:
    """The uvicorn server ``corral serve`` runs, with ``server.connections`` and
    ``server.drain_s`` applied (and the GIL handed over sooner: see the module)."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    limits = server.connections
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        log_config=None,  # uvicorn's records go through corral's handler (text or JSON)
        http=guarded_protocol(limits),
        timeout_keep_alive=limits.keep_alive_s,  # type: ignore[arg-type]
        limit_concurrency=limits.max_concurrency,
        timeout_graceful_shutdown=server.drain_s,  # type: ignore[arg-type]
    )
    return DrainingServer(config)
