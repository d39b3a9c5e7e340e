"""API keys, per-key experts and rate limits, checked once per request.

With ``server.api_keys`` set, every endpoint but the health checks needs a key (401
without one). Only SHA-256 digests of the keys are held, compared in constant time. The
matching key's ``Grant`` (the experts it may use) is set for the request, and its rate
limit is applied; without keys the rate limit applies per client address.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from fastapi import Request
from starlette.exceptions import HTTPException

from corral.access import Grant, granted
from corral.config import ApiKeyConfig, RateLimitConfig, ServerConfig
from corral.observe.trace import active_trace
from corral.server.ratelimit import RateLimiter

__all__ = ["ApiKeys", "key_digest"]

_SHA256_PREFIX = "sha256:"


@dataclass(frozen=True)
class _Key:
    digest: bytes
    grant: Grant
    rate_limit: RateLimitConfig


def key_digest(key: str) -> str:
    """The hex SHA-256 of a key: what ``server.api_keys`` may hold instead of the key."""
    return hashlib.sha256(key.encode()).hexdigest()


def _parse(entry: str | ApiKeyConfig, default_limit: RateLimitConfig) -> _Key | None:
    if isinstance(entry, str):
        if not entry:
            return None  # an unset ${VAR:-} leaves an empty entry: no key
        hashed = entry.startswith(_SHA256_PREFIX)
        digest_hex = entry[len(_SHA256_PREFIX) :].lower() if hashed else key_digest(entry)
        entry = ApiKeyConfig(sha256=digest_hex)
    digest = bytes.fromhex(entry.sha256 or key_digest(entry.key or ""))
    client = entry.name or "key-" + digest.hex()[:8]  # names the key, not reversible
    experts = frozenset(entry.experts) if entry.experts is not None else None
    grant = Grant(client, experts, owner=client, shared=entry.shared, admin=entry.role == "admin")
    return _Key(digest, grant, entry.rate_limit or default_limit)


class ApiKeys:
    """Authenticates a request, sets its grant, and admits it through its rate limit."""

    def __init__(self, server: ServerConfig, limiter: RateLimiter | None = None) -> None:
        parsed = (_parse(entry, server.rate_limit) for entry in server.api_keys)
        self._keys = [key for key in parsed if key is not None]
        self._default_limit = server.rate_limit
        self.limiter = limiter or RateLimiter()
        self._limits = {key.grant.client: key.rate_limit for key in self._keys}

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def check(self, request: Request, *, limited: bool = True) -> Grant:
        """401 without a configured key, 429 over the rate limit; else the grant, which
        also holds for the rest of the request. Runs once per request. ``limited``
        False: reads of corral's own state (metrics, traces, the dashboard's polling)
        need the key but spend no rate."""
        known: Grant | None = getattr(request.state, "grant", None)
        if known is not None:
            return known
        key = self._match(request) if self.enabled else None
        if key is None:
            host = request.client.host if request.client else "unknown"
            grant, limits = Grant("client-" + host), self._default_limit
        else:
            grant, limits = key.grant, key.rate_limit
        trace = active_trace()
        if trace is not None:
            trace.client = grant.client
            if key is not None:
                trace.api_key = grant.client
        if limited:
            self.limiter.admit(grant.client, limits)
        granted(grant)
        request.state.grant = grant
        return grant

    def spend_tokens(self, client: str | None, tokens: int) -> None:
        """After a request: its tokens count against its client's token rate."""
        if client is not None:
            self.limiter.spend_tokens(client, self._limits.get(client, self._default_limit), tokens)

    def _match(self, request: Request) -> _Key:
        header = request.headers.get("authorization", "")
        presented = (
            header[7:]
            if header.lower().startswith("bearer ")
            else request.headers.get("x-api-key", "")
        )
        digest = hashlib.sha256(presented.encode()).digest()
        found: _Key | None = None
        for key in self._keys:  # every key compared, so timing does not tell which matched
            if hmac.compare_digest(digest, key.digest):
                found = key
        if found is None:
            raise HTTPException(
                401,
                "missing or invalid API key: send 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return found
