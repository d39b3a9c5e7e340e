"""API keys: when ``server.api_keys`` is set, every endpoint but health checks needs one."""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request
from starlette.exceptions import HTTPException

from corral.observe.trace import active_trace


class ApiKeys:
    """Holds only SHA-256 digests of the keys and compares them in constant time."""

    def __init__(self, keys: list[str]) -> None:
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys if k]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def check(self, request: Request) -> None:
        """401 unless the request carries a configured key; notes which key on the trace."""
        if not self.enabled:
            return
        header = request.headers.get("authorization", "")
        key = (
            header[7:]
            if header.lower().startswith("bearer ")
            else request.headers.get("x-api-key", "")
        )
        digest = hashlib.sha256(key.encode()).digest()
        matched = False
        for known in self._digests:
            matched |= hmac.compare_digest(digest, known)
        trace = active_trace()
        if matched and trace is not None:
            trace.api_key = "key-" + digest.hex()[:8]  # names the key in usage, not reversible
        if not matched:
            raise HTTPException(
                401,
                "missing or invalid API key: send 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
