"""``corral.uploads.files.FileStore``: a bounded, expiring in-memory upload store."""

from __future__ import annotations

import pytest

from corral.config import LimitsConfig
from corral.errors import InvalidRequest, NotFound, PayloadTooLarge
from corral.uploads.files import FileStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _store(clock: Clock, **limits: float) -> FileStore:
    settings = {"max_file_bytes": 100, "max_files": 3, "max_bytes": 250, "ttl_s": 60.0}
    settings.update(limits)
    return FileStore(clock=clock, **settings)  # type: ignore[arg-type]


def test_put_get_info_delete() -> None:
    store = _store(Clock())
    first = store.put(b"abc", "a.png", "image/png")
    second = store.put(b"defg")
    assert first != second and first.startswith("file-") and len(first) == 29
    assert store.get(first) == b"abc" and store.get(second) == b"defg"
    info = store.info(first)
    assert (info.bytes, info.filename, info.content_type) == (3, "a.png", "image/png")
    assert info.expires_at - info.created_at == 60.0
    assert [f.id for f in store.list()] == [first, second] and store.total_bytes == 7
    store.delete(first)
    with pytest.raises(NotFound) as caught:
        store.get(first, param="file_ids[2]")
    assert caught.value.param == "file_ids[2]" and "POST /v1/files" in caught.value.message
    assert store.total_bytes == 4


def test_uploads_expire() -> None:
    clock = Clock()
    store = _store(clock)
    old = store.put(b"old")
    clock.now += 30
    young = store.put(b"young")
    clock.now += 31  # old is 61 s old, young 31 s
    with pytest.raises(NotFound, match="expired after 60 s"):
        store.get(old)
    assert store.get(young) == b"young" and store.total_bytes == 5


def test_oldest_dropped_past_count_or_bytes() -> None:
    store = _store(Clock())
    ids = [store.put(bytes([i]) * 10) for i in range(4)]  # max_files 3
    assert [f.id for f in store.list()] == ids[1:]
    big = store.put(b"x" * 100)
    big2 = store.put(b"y" * 100)  # 10 + 10 + 100 + 100 > 250: the oldest go
    assert [f.id for f in store.list()] == [ids[3], big, big2] and store.total_bytes == 210


def test_too_big_is_413_naming_the_limit() -> None:
    store = _store(Clock())
    with pytest.raises(PayloadTooLarge, match=r"server\.limits\.max_file_bytes is 100"):
        store.put(b"z" * 101)
    with pytest.raises(InvalidRequest, match="empty"):
        store.put(b"")
    assert store.list() == []


def test_built_from_limits() -> None:
    limits = LimitsConfig(max_file_bytes=5, max_files=2, max_files_bytes=7, file_ttl_s=9)
    store = FileStore.from_limits(limits)
    assert (store.max_file_bytes, store.max_files, store.max_bytes, store.ttl_s) == (5, 2, 7, 9)
