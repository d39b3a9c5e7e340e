"""Vector helpers shared by everything that compares embeddings by cosine."""

from __future__ import annotations

import numpy as np

__all__ = ["unit_rows"]


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """``vectors`` (one, or rows of a matrix) scaled to unit length, as float32; zero
    vectors stay zero instead of dividing by zero."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
