"""Ruled lines and the boxes they draw: a form's boxes, a table's grid.

Why: a boxed form puts a label in each box's top-left corner and the value inside; a
value belongs to the box its label is in, whatever is beside it. On a scan the lines
also confuse OCR (a line under a word merges rows), so they are erased before OCR.

* From an image: dark pixels opened with a long thin kernel, horizontally and
  vertically (text strokes are short; a slightly rotated line still spans the kernel).
* From a PDF: the page's path objects (strokes and rectangles), drawn into the same
  kind of mask at the page's pixel size.
* **Boxes** are the blank regions the mask encloses: connected components of the
  non-line pixels that do not touch the page's edge, at least a couple of text lines
  tall and not most of the page.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from corral.experts.base import require
from corral.tasks.documents.layout import Box

__all__ = ["boxes_from_mask", "erase", "image_rules", "path_rules"]


def image_rules(image: np.ndarray) -> np.ndarray:
    """A uint8 mask (255: a ruled line) of an RGB page."""
    cv2 = require("cv2", "documents")
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    dark = (gray < 140).astype(np.uint8) * 255
    height, width = gray.shape
    length = max(30, min(width, height) // 30)
    horizontal = cv2.morphologyEx(dark, cv2.MORPH_OPEN, np.ones((1, length), np.uint8))
    vertical = cv2.morphologyEx(dark, cv2.MORPH_OPEN, np.ones((length, 1), np.uint8))
    mask: np.ndarray = cv2.dilate(horizontal | vertical, np.ones((3, 3), np.uint8))
    return mask


def path_rules(rects: Iterable[Box], size: tuple[int, int]) -> np.ndarray:
    """The mask of a PDF page's path objects (pixel boxes): thin ones are lines, the
    rest rectangle outlines."""
    cv2 = require("cv2", "documents")
    width, height = size
    mask = np.zeros((height, width), np.uint8)
    for x0, y0, x1, y1 in rects:
        p0, p1 = (round(x0), round(y0)), (round(x1), round(y1))
        thin = min(x1 - x0, y1 - y0) < 4
        cv2.rectangle(mask, p0, p1, 255, -1 if thin else 2)
    return mask


def erase(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The page with its ruled lines painted white (for OCR)."""
    cleaned = image.copy()
    cleaned[mask > 0] = 255
    return cleaned


def boxes_from_mask(mask: np.ndarray, *, min_side: float = 30.0) -> list[Box]:
    """The boxes the lines of ``mask`` enclose (see module docs), top to bottom."""
    cv2 = require("cv2", "documents")
    if not mask.any():
        return []
    # at half resolution (a line pixel anywhere in a 2x2 cell keeps the cell a line):
    # boxes are far larger than that, and labelling a page's pixels is 4x cheaper
    half = (mask.shape[1] // 2, mask.shape[0] // 2)
    small = cv2.resize(mask, half, interpolation=cv2.INTER_AREA)
    height, width = small.shape
    count, _, stats, _ = cv2.connectedComponentsWithStats(
        (small == 0).astype(np.uint8), connectivity=4
    )
    boxes: list[Box] = []
    for x, y, w, h, _area in stats[1:count].tolist():
        if x <= 0 or y <= 0 or x + w >= width or y + h >= height:
            continue  # the page around the lines
        if 2 * w < min_side or 2 * h < min_side or w * h > 0.5 * width * height:
            continue
        boxes.append((2.0 * x, 2.0 * y, 2.0 * (x + w), 2.0 * (y + h)))  # full-size pixels
    boxes.sort(key=lambda b: (b[1], b[0]))
    return boxes
