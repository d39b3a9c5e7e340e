"""Numbers from clients, checked before a model sees them: a 422 that names the first
bad place (``data[3][1]``), never a NaN inside a forward pass or a ragged array error."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from corral.errors import InvalidRequest

__all__ = ["finite", "float_rows"]


def finite(values: np.ndarray, where: str) -> np.ndarray:
    """``values`` unchanged; 422 naming the first NaN or infinity as ``where[i][j]``."""
    bad = np.argwhere(~np.isfinite(values))
    if bad.size:
        index = tuple(int(v) for v in bad[0])
        place = where + "".join(f"[{i}]" for i in index)
        raise InvalidRequest(
            f"{place} is {values[index]}; values must be finite numbers", param=place
        )
    return values


def float_rows(rows: Sequence[Sequence[float]], where: str) -> np.ndarray:
    """Rows as a float64 matrix; 422 when there are none, or one is empty, ragged or not
    finite."""
    if not rows:
        raise InvalidRequest(f"{where} is empty; give at least one row", param=where)
    width = len(rows[0])
    for i, row in enumerate(rows):
        if not row:
            raise InvalidRequest(
                f"{where}[{i}] is empty; rows need at least one value", param=f"{where}[{i}]"
            )
        if len(row) != width:
            raise InvalidRequest(
                f"{where}[{i}] has {len(row)} values but {where}[0] has {width}: rows must be "
                "the same width",
                param=f"{where}[{i}]",
            )
    return finite(np.asarray(rows, dtype=np.float64), where)
