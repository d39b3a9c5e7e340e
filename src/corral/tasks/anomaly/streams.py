"""Rolling windows of streamed values, one per (detector, stream id), bounded and LRU.

A stream keeps only the last ``window - 1`` values it has seen: with the next values
they make the windows that end at each new value. Streams are plain memory (a restart
starts them empty, as it would a socket); the detectors they score with persist.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

__all__ = ["StreamWindows"]


@dataclass
class _Stream:
    window: int
    tail: list[float] = field(default_factory=list)
    seen: int = 0


class StreamWindows:
    """At most ``max_streams`` streams; the least recently fed is dropped first."""

    def __init__(self, max_streams: int) -> None:
        self.max_streams = max_streams
        self._streams: OrderedDict[tuple[str, str], _Stream] = OrderedDict()
        self._lock = threading.Lock()

    def push(
        self, detector: str, stream_id: str, values: list[float], window: int
    ) -> tuple[list[float], int, int]:
        """Append ``values``; returns (the values to cut into windows, how many of the
        sent values complete no window yet, values seen in all). A detector refitted with
        another window starts its streams afresh."""
        key = (detector, stream_id)
        with self._lock:
            stream = self._streams.get(key)
            if stream is None or stream.window != window:
                stream = _Stream(window)
            self._streams[key] = stream
            self._streams.move_to_end(key)
            while len(self._streams) > self.max_streams:
                self._streams.popitem(last=False)
            segment = stream.tail + values
            waiting = len(values) - max(0, len(segment) - window + 1)
            stream.tail = segment[-(window - 1) :]  # window >= 2
            stream.seen += len(values)
            return segment, waiting, stream.seen

    def forget(self, detector: str) -> None:
        """Drop every stream of a deleted detector."""
        with self._lock:
            for key in [k for k in self._streams if k[0] == detector]:
                del self._streams[key]

    def __len__(self) -> int:
        return len(self._streams)
