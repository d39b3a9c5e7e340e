"""Blocks: segments stacked into paragraphs (a seller's name over its address, a
"Bill To" label over a customer), and the column gutters that separate side-by-side
blocks so that a label never takes a value from another column.

* A segment joins the block whose last segment sits just above it (a gap of at most
  one line height) and lines up with it: same left edge, same centre (a receipt's
  centred header), or overlapping most of the narrower one. Segments that are a label
  with its value on the same line, and table rows, are in no block.
* A block whose first segment is only a label ("Bill To") carries it as its ``label``.
* A **column gutter** is a gap between two segments of a line that continues, as
  blank space with text on both sides, through at least two neighbouring lines, where
  the text left of it is not only labels (labels left of a gap are a key column; their
  values are right of it, in the same block of the page).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from corral.tasks.documents.layout import Box, Line, Segment, union

__all__ = ["Block", "column_gutters", "find_blocks"]


@dataclass
class Block:
    segments: list[Segment] = field(default_factory=list)
    label: Segment | None = None

    @property
    def box(self) -> Box:
        boxes = [s.box for s in self.segments]
        if self.label is not None:
            boxes.append(self.label.box)
        return union(boxes)

    @property
    def lines(self) -> list[str]:
        return [s.text for s in self.segments]


def _fits(last: Segment, segment: Segment) -> bool:
    height = max(last.box[3] - last.box[1], segment.box[3] - segment.box[1])
    gap = segment.box[1] - last.box[3]
    if not -0.3 * height <= gap <= 1.0 * height:
        return False
    (a0, _, a1, _), (b0, _, b1, _) = last.box, segment.box
    if abs(a0 - b0) <= height or abs((a0 + a1) - (b0 + b1)) / 2 <= height:
        return True
    return min(a1, b1) - max(a0, b0) >= 0.6 * min(a1 - a0, b1 - b0)


def find_blocks(
    lines: list[Line], excluded: set[int], is_label: Callable[[Segment], bool]
) -> list[Block]:
    """Blocks of the segments whose ids are not in ``excluded``, top to bottom."""
    blocks: list[Block] = []
    for line in lines:
        opened: list[Block] = []
        for segment in line.segments:
            if id(segment) in excluded:
                continue
            home = next(
                (
                    b
                    for b in reversed(blocks)
                    if b not in opened and _fits(b.segments[-1] if b.segments else b.label, segment)  # type: ignore[arg-type]
                ),
                None,
            )
            if home is None:
                home = Block()
                blocks.append(home)
                if is_label(segment):
                    home.label = segment
                    opened.append(home)
                    continue
            home.segments.append(segment)
            opened.append(home)
    return [b for b in blocks if b.segments]


def column_gutters(
    lines: list[Line], is_label: Callable[[Segment], bool], skip: set[int]
) -> set[tuple[int, int]]:
    """(line index, segment index k): the gap after segment k of that line is a column
    gutter (see module docs); lines in ``skip`` (tables) neither have nor extend one."""
    gutters: set[tuple[int, int]] = set()
    for i, line in enumerate(lines):
        if i in skip:
            continue
        for k, (left, right) in enumerate(zip(line.segments, line.segments[1:], strict=False)):
            a, b = left.box[2], right.box[0]
            middle = (a + 0.25 * (b - a), b - 0.25 * (b - a))
            run = [left]
            for step in (-1, 1):  # the contiguous lines above, then below, that share the gap
                j = i + step
                while 0 <= j < len(lines) and abs(j - i) <= 3 and j not in skip:
                    beside = _left_of_gap(lines[j], middle)
                    if beside is None:
                        break
                    run.append(beside)
                    j += step
            if len(run) >= 3 and sum(not is_label(s) for s in run) * 2 > len(run):
                gutters.add((i, k))
    return gutters


def _left_of_gap(line: Line, gap: tuple[float, float]) -> Segment | None:
    """The segment of ``line`` just left of blank ``gap`` when text lies on both sides
    of it and none across it; else None."""
    left = right = None
    for segment in line.segments:
        x0, x1 = segment.box[0], segment.box[2]
        if x1 > gap[0] and x0 < gap[1]:
            return None
        if x1 <= gap[0]:
            left = segment
        elif right is None:
            right = segment
    return left if right is not None else None
