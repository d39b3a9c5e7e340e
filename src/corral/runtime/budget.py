"""Memory budgets per device, and how much an expert takes there.

``runtime.memory_budget`` is one value for every device or a mapping per device
(``cpu``, ``cuda``, ``cuda:1``): bytes with a unit (``6GiB``, ``512MB``) or a share of the
device's total (``50%``, ``0.5``). Memory is measured around each load (RSS growth for
the CPU, used device memory for a GPU) and remembered, so the next load decision knows
what an expert takes; before its first load the estimate is ``memory:`` from the config,
else the size of its weights on disk.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import psutil

from corral.config import SIZE_PATTERN

__all__ = ["budget_for", "device_used_bytes", "parse_size", "weights_bytes"]

_UNITS = {
    "": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}  # fmt: skip


def parse_size(text: str, total: int | None = None) -> int:
    """``6GiB`` -> bytes; ``50%`` or ``0.5`` -> that share of ``total``."""
    match = re.match(SIZE_PATTERN, text.strip())
    if match is None:
        raise ValueError(f"{text!r}: give bytes with a unit (6GiB, 512MB) or a share (50%)")
    number, unit = float(match.group(1)), match.group(2).lower()
    if unit == "%" or (unit == "" and number <= 1.0):
        if total is None:
            raise ValueError(f"{text!r}: a share of what? give bytes with a unit")
        return int(total * (number / 100 if unit == "%" else number))
    return int(number * _UNITS[unit])


def budget_for(device: str, budget: str | Mapping[str, str] | None) -> int | None:
    """Bytes the experts on ``device`` may take together; None: no limit."""
    if budget is None:
        return None
    if isinstance(budget, str):
        value: str | None = budget
    else:
        value = budget.get(device) or budget.get(device.split(":")[0])
    return None if value is None else parse_size(value, _device_total(device))


def device_used_bytes(device: str) -> int:
    """What is in use on ``device`` now: this process's RSS, or the GPU's used memory."""
    if device.startswith("cuda"):
        import torch

        free, total = torch.cuda.mem_get_info(torch.device(device))
        return int(total - free)
    return int(psutil.Process(os.getpid()).memory_info().rss)


def weights_bytes(path: Path | None) -> int:
    """Size on disk of a weights file or folder: the estimate before a first load."""
    if path is None or not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _device_total(device: str) -> int:
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[1])
    return int(psutil.virtual_memory().total)
