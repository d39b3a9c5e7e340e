"""Answer only for our own host names, and only same-origin state changes.

Without API keys (the default) a web page could otherwise reach a server on 127.0.0.1:
by DNS rebinding (an attacker's name resolving to 127.0.0.1, so the browser sends
``Host: evil.example``) or by a cross-origin form post (CSRF, e.g. a multipart upload
to ``/v1/files``). ``HostGuard`` answers 400 for a Host outside ``server.allowed_hosts``
and 403 for a POST/PUT/PATCH/DELETE whose Origin is neither this server nor allowed by
``server.cors.allow_origins``. Requests without an Origin (curl, SDKs) are not browsers'
cross-origin requests and pass.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from corral.config import ServerConfig
from corral.server.errors import error_response

__all__ = ["HostGuard", "allowed_host_names"]

_LOCAL = ("localhost", "127.0.0.1", "::1")
_WILDCARDS = ("", "0.0.0.0", "::")
_STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def allowed_host_names(server: ServerConfig) -> frozenset[str] | None:
    """Host names (lower case, no port, IPv6 without brackets) served; None: any."""
    names = server.allowed_hosts
    if names is None:
        names = [*_LOCAL, *([server.host] if server.host not in _WILDCARDS else [])]
    if "*" in names:
        return None
    return frozenset(_bare(name) for name in names)


def _bare(host: str) -> str:
    """``[::1]:8000`` -> ``::1``, ``Example.COM:80`` -> ``example.com``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


class HostGuard:
    """ASGI middleware: the Host check for every request, the Origin check for writes."""

    def __init__(self, app: ASGIApp, server: ServerConfig) -> None:
        self.app = app
        self.hosts = allowed_host_names(server)
        self.origins = frozenset(o.rstrip("/").lower() for o in server.cors.allow_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if not self._host_allowed(_bare(host), scope):
            message = (
                f"Host {host!r} is not served here; add it to server.allowed_hosts "
                "if this server should answer for that name"
            )
            await error_response(400, message, "invalid_host")(scope, receive, send)
            return
        origin = headers.get("origin")
        if (
            origin is not None
            and scope["method"] in _STATE_CHANGING
            and not self._origin_allowed(origin, host)
        ):
            message = (
                f"cross-origin {scope['method']} from {origin!r} refused; add the origin to "
                "server.cors.allow_origins to allow it"
            )
            await error_response(403, message, "cross_origin_forbidden")(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _host_allowed(self, host: str, scope: Scope) -> bool:
        if self.hosts is None or host in self.hosts:
            return True
        local = scope.get("server")  # the address this connection arrived on (an IP)
        return local is not None and host == str(local[0]).lower()

    def _origin_allowed(self, origin: str, host: str) -> bool:
        origin = origin.rstrip("/").lower()
        if "*" in self.origins or origin in self.origins:
            return True
        parts = urlsplit(origin)
        return origin != "null" and parts.netloc == host.lower()  # same origin
