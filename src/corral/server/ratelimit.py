"""Rate limits per client: token buckets for requests and for tokens.

Requests are counted when a request is admitted. Tokens are only known once the experts
have answered, so they are spent afterwards and may take the bucket below zero; a client
in debt is refused until the refill brings it back above zero. Either refusal is a 429
whose Retry-After is when the bucket will allow the next request.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from corral.config import RateLimitConfig
from corral.errors import RateLimited

__all__ = ["RateLimiter", "TokenBucket"]

_MAX_CLIENTS = 10_000  # buckets kept; the least recently seen client's go first


class TokenBucket:
    """Holds up to a minute's worth; refills at ``per_minute / 60`` a second."""

    def __init__(self, per_minute: float, now: float) -> None:
        self.capacity = per_minute
        self.rate = per_minute / 60.0
        self.level = per_minute
        self._stamp = now

    def _refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self._stamp) * self.rate)
        self._stamp = now

    def seconds_until(self, amount: float, now: float) -> float:
        """0 when ``amount`` can be taken now, else how long until it can."""
        self._refill(now)
        missing = amount - self.level
        return 0.0 if missing <= 0 else missing / self.rate

    def spend(self, amount: float, now: float) -> None:
        self._refill(now)
        self.level -= amount


class RateLimiter:
    """Buckets per (client, kind), created on a client's first request."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()  # tokens are spent from the usage thread too
        self._buckets: OrderedDict[tuple[str, str], TokenBucket] = OrderedDict()

    def admit(self, client: str, limits: RateLimitConfig) -> None:
        """Count one request; 429 if the client is over its request or token rate."""
        with self._lock:
            now = self._clock()
            waits = []
            requests = self._bucket(client, "requests", limits.requests_per_minute, now)
            if requests is not None:
                waits.append(requests.seconds_until(1, now))
            tokens = self._bucket(client, "tokens", limits.tokens_per_minute, now)
            if tokens is not None:
                # in debt from earlier requests: wait until back above zero
                waits.append(tokens.seconds_until(1e-9, now))
            wait = max(waits, default=0.0)
            if wait > 0:
                kind = "requests" if waits[0] == wait and requests is not None else "tokens"
                raise RateLimited(
                    f"rate limit for {client!r} reached ({kind} per minute); "
                    f"retry in {math.ceil(wait)} s",
                    retry_after=wait,
                )
            if requests is not None:
                requests.spend(1, now)

    def spend_tokens(self, client: str, limits: RateLimitConfig, tokens: int) -> None:
        """Charge the tokens a finished request used."""
        if limits.tokens_per_minute is None or tokens <= 0:
            return
        with self._lock:
            now = self._clock()
            bucket = self._bucket(client, "tokens", limits.tokens_per_minute, now)
            assert bucket is not None
            bucket.spend(tokens, now)

    def _bucket(
        self, client: str, kind: str, per_minute: float | None, now: float
    ) -> TokenBucket | None:
        if per_minute is None:
            return None
        key = (client, kind)
        bucket = self._buckets.get(key)
        if bucket is None or bucket.capacity != per_minute:
            bucket = self._buckets[key] = TokenBucket(per_minute, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > _MAX_CLIENTS:
            self._buckets.popitem(last=False)
        return bucket
