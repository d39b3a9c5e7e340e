"""Uploads kept in memory for a while, so requests can pass images **by reference**.

An LLM coordinator cannot carry a 300 kB base64 photo through its prompt: the client
uploads it once (``POST /v1/files``), gets an id, and every later request (or tool call)
names the id. The store is a bounded cache, not storage: uploads expire after
``file_ttl_s``, and when ``max_files`` or ``max_files_bytes`` would be exceeded the oldest
are dropped first. Ids are random (not guessable from another upload's id). One store
per runtime (``runtime.files``), nothing global.

With API keys, an upload belongs to the key that made it: another key's request naming
its id gets the same 404 as an unknown id (unless that key is ``shared`` or ``admin``),
so an id that leaks is still no way in.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from corral.access import current_grant
from corral.config import LimitsConfig
from corral.errors import InvalidRequest, NotFound, PayloadTooLarge

__all__ = ["FileStore", "StoredFile"]


@dataclass(frozen=True)
class StoredFile:
    """What is known of one upload besides its bytes."""

    id: str
    bytes: int
    filename: str | None
    content_type: str | None
    created_at: float  # unix seconds
    expires_at: float  # unix seconds
    owner: str | None = None  # the API key that uploaded it; None without keys


class FileStore:
    """Thread-safe: experts read it from worker threads while the event loop writes it."""

    def __init__(
        self,
        *,
        max_file_bytes: int,
        max_files: int,
        max_bytes: int,
        ttl_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._files: OrderedDict[str, tuple[StoredFile, bytes]] = OrderedDict()  # oldest first
        self._total = 0

    @classmethod
    def from_limits(cls, limits: LimitsConfig, clock: Callable[[], float] = time.time) -> FileStore:
        return cls(
            max_file_bytes=limits.max_file_bytes,
            max_files=limits.max_files,
            max_bytes=limits.max_files_bytes,
            ttl_s=limits.file_ttl_s,
            clock=clock,
        )

    def put(
        self, data: bytes, filename: str | None = None, content_type: str | None = None
    ) -> str:
        """Keep ``data``; returns its id. 413 naming the limit when it is too big."""
        if not data:
            raise InvalidRequest("the file is empty", param="file")
        limit = min(self.max_file_bytes, self.max_bytes)
        if len(data) > limit:
            name = "max_file_bytes" if limit == self.max_file_bytes else "max_files_bytes"
            raise PayloadTooLarge(
                f"the file has {len(data)} bytes; server.limits.{name} is {limit}", param="file"
            )
        now = self._clock()
        grant = current_grant()
        info = StoredFile(
            id="file-" + secrets.token_hex(12),
            bytes=len(data),
            filename=filename,
            content_type=content_type,
            created_at=now,
            expires_at=now + self.ttl_s,
            owner=grant.owner if grant is not None else None,
        )
        with self._lock:
            self._expire(now)
            while self._files and (
                len(self._files) >= self.max_files or self._total + len(data) > self.max_bytes
            ):
                self._drop(next(iter(self._files)))
            self._files[info.id] = (info, bytes(data))
            self._total += len(data)
        return info.id

    def get(self, file_id: str, *, param: str = "file_id") -> bytes:
        """The bytes of ``file_id``; 404 naming ``param`` when it is unknown or expired."""
        return self._entry(file_id, param)[1]

    def info(self, file_id: str, *, param: str = "file_id") -> StoredFile:
        return self._entry(file_id, param)[0]

    def delete(self, file_id: str, *, param: str = "file_id") -> None:
        with self._lock:
            self._entry_locked(file_id, param)
            self._drop(file_id)

    def list(self) -> list[StoredFile]:
        """Every upload still kept that the current request's key may see, oldest first."""
        with self._lock:
            self._expire(self._clock())
            return [info for info, _ in self._files.values() if _visible(info)]

    @property
    def total_bytes(self) -> int:
        return self._total

    def _entry(self, file_id: str, param: str) -> tuple[StoredFile, bytes]:
        with self._lock:
            return self._entry_locked(file_id, param)

    def _entry_locked(self, file_id: str, param: str) -> tuple[StoredFile, bytes]:
        self._expire(self._clock())
        entry = self._files.get(file_id)
        if entry is None or not _visible(entry[0]):  # another key's: as if unknown
            raise NotFound(
                f"no file {file_id[:64]!r} (unknown, expired after {self.ttl_s:g} s, or "
                "dropped to make room): upload it again with POST /v1/files",
                param=param,
            )
        return entry

    def _expire(self, now: float) -> None:
        while self._files:
            oldest, (info, _) = next(iter(self._files.items()))
            if info.expires_at > now:
                return
            self._drop(oldest)

    def _drop(self, file_id: str) -> None:
        _, data = self._files.pop(file_id)
        self._total -= len(data)


def _visible(info: StoredFile) -> bool:
    """Whether the current request (none: the server itself) may see the upload."""
    grant = current_grant()
    return grant is None or grant.may_see(info.owner)
