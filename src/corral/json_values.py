"""Values parsed from JSON that no expert can take: text that is not Unicode (a lone
surrogate, which ``json`` reads from a valid ``"\\ud800"``) and numbers that are not
finite (``NaN``, ``Infinity``, ``1e999``). Found with their path, so the 422 names the
field: for request bodies (``server/body_check.py``) and for the tool arguments a
coordinator LLM writes (``routing/coordinator.py``)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

__all__ = ["first_bad_value"]


def first_bad_value(value: Any, path: str = "") -> tuple[str, str] | None:
    """(path, message naming it) for the first string that is not Unicode text or
    number that is not finite in a parsed JSON value, else None."""
    for where, item in _leaves(value, path):
        if isinstance(item, str) and not _encodable(item):
            bad = next(ch for ch in item if 0xD800 <= ord(ch) <= 0xDFFF)
            return where, (
                f"{where}: the text holds a lone surrogate (\\u{ord(bad):04x}), which is not "
                "Unicode text; send UTF-8 text (a surrogate only as half of an escaped pair)"
            )
        if isinstance(item, float) and not math.isfinite(item):
            return where, f"{where} is {item}: only finite numbers (no NaN or Infinity)"
    return None


def _leaves(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            yield (path or "body") + " (a key)", key
            yield from _leaves(item, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{path}[{index}]")
    else:
        yield path or "body", value


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
