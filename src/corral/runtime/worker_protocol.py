"""The frames an isolated expert's worker process and the server exchange over its pipes.

A frame is a 4-byte big-endian length and that many bytes of UTF-8 JSON: no pickle in
either direction, so a worker (or anything that took its place) can send nothing but
data. Errors cross as ``{"type", "message", "param", "retry_after"}`` and are rebuilt
only as corral's own request and expert error types (an allow-list); anything else
arrives as ExpertFailed.

Parent to worker: ``load`` (spec, path, device, limits), ``complete`` and ``stream``
(id, params), ``cancel`` (id), ``close``. Worker to parent: ``ready`` (resident bytes,
runtime in use) or ``error`` for the load; then per call ``result``, ``chunk`` ...
``end``, or ``error``.
"""

from __future__ import annotations

import json
import struct
from typing import IO, Any

from corral import errors
from corral.errors import CorralError, ExpertError, ExpertFailed, RequestError

__all__ = ["MAX_FRAME", "error_frame", "raise_error", "read_frame", "write_frame"]

_HEADER = struct.Struct(">I")
MAX_FRAME = 256 * 2**20  # far above any request corral admits; a bigger length is garbage


def write_frame(stream: IO[bytes], message: dict[str, Any]) -> None:
    """Write one frame and flush it (the caller serialises writers)."""
    body = json.dumps(message, separators=(",", ":")).encode()
    stream.write(_HEADER.pack(len(body)) + body)
    stream.flush()


def read_frame(stream: IO[bytes]) -> dict[str, Any] | None:
    """The next frame, or None at end of stream (the other side is gone)."""
    header = _read_exactly(stream, _HEADER.size)
    if header is None:
        return None
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME:
        raise ValueError(f"frame of {length} bytes is over the {MAX_FRAME}-byte limit")
    body = _read_exactly(stream, length)
    if body is None:
        return None
    message: dict[str, Any] = json.loads(body)
    return message


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    parts, wanted = [], size
    while wanted:
        part = stream.read(wanted)
        if not part:
            return None
        parts.append(part)
        wanted -= len(part)
    return b"".join(parts)


def error_frame(exc: BaseException, expert: str) -> dict[str, Any]:
    """How an error leaves the worker: corral's own as they are, anything else generic
    (its traceback stays in the worker's log, which is the server's stderr)."""
    if isinstance(exc, CorralError):
        return {
            "type": type(exc).__name__,
            "message": exc.message,
            "param": exc.param,
            "retry_after": exc.retry_after,
        }
    return {
        "type": "ExpertFailed",
        "message": f"expert {expert!r} failed on this request ({type(exc).__name__}); "
        "the server log has the details",
        "param": None,
        "retry_after": None,
    }


def raise_error(error: dict[str, Any]) -> None:
    """Raise the corral error a worker sent; unknown names become ExpertFailed."""
    cls = getattr(errors, str(error.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, RequestError | ExpertError)):
        cls = ExpertFailed
    retry_after = error.get("retry_after")
    raise cls(
        str(error.get("message", "the expert's worker failed")),
        param=error.get("param"),
        retry_after=float(retry_after) if retry_after is not None else None,
    )
