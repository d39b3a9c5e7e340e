"""Tables from a page's lines: consecutive rows of aligned segments (see
``layout``'s module docs for the rules), with wrapped descriptions joined to their row.

A line is not a row when it is a label with its value, a summary line (Total, Tax), a
row of labels alone, or sits in another drawn grid than the rows above it.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence

from corral.tasks.documents.layout import (
    Box,
    Line,
    Table,
    is_summary,
    label_words,
    overlaps_x,
    union,
)

__all__ = ["find_tables"]


def _table_candidate(line: Line, labels: frozenset[str]) -> bool:
    """Two or more segments, none of them a ``label:`` or a label followed by its value,
    not a summary line (Total, Tax, ...), not a row of labels alone (their values are on
    the line below)."""
    if len(line.segments) < 2 or is_summary(line):
        return False
    if any(w.text.endswith(":") for w in line.words):
        return False
    only = [label_words(s, labels) == len(s.words) for s in line.segments]
    if all(only):
        return False
    if any(a and not b for a, b in itertools.pairwise(only)):
        return False  # "Reference  A-7" beside other text: a key and its value, not cells
    return not (len(line.segments) == 2 and label_words(line.segments[0], labels))


def _aligned(line: Line, columns: list[Box]) -> bool:
    """Most of the line's segments fall under a column the table already has."""
    hits = sum(any(overlaps_x(s.box, c) for c in columns) for s in line.segments)
    return hits * 2 >= len(line.segments)


def _columns(rows: list[Line]) -> list[tuple[float, float]]:
    spans = sorted((s.box[0], s.box[2]) for row in rows for s in row.segments)
    merged = [list(spans[0])]
    for x0, x1 in spans[1:]:
        if x0 < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], x1)
        else:
            merged.append([x0, x1])
    return [(a, b) for a, b in merged]


def _table(rows: list[list[Line]]) -> Table:
    """Cells of rows (a row: its line, then the lines it wrapped onto), by column."""
    columns = _columns([row[0] for row in rows])
    cells: list[list[str]] = []
    for row in rows:
        texts: list[list[str]] = [[] for _ in columns]
        for segment in (s for line in row for s in line.segments):
            centre = (segment.box[0] + segment.box[2]) / 2
            index = min(
                range(len(columns)),
                key=lambda i: (
                    0
                    if columns[i][0] <= centre <= columns[i][1]
                    else min(abs(centre - columns[i][0]), abs(centre - columns[i][1])) + 1
                ),
            )
            texts[index].append(segment.text)
        cells.append([" ".join(t) for t in texts])
    return Table(rows=cells, box=union(line.box for row in rows for line in row))


def _top(line: Line, x0: float, x1: float) -> float:
    """The top of the line's words overlapping ``x0..x1`` (the line's top if none do)."""
    tops = [w.box[1] for w in line.words if min(w.box[2], x1) > max(w.box[0], x0)]
    return min(tops) if tops else line.box[1]


def _wraps(line: Line, rows: list[list[Line]], labels: frozenset[str]) -> bool:
    """Whether ``line`` continues the last row: closer under it (top to top) than the
    rows (two or more) are to each other, fewer segments than the row, each under
    exactly one column, no label among them."""
    last = rows[-1]
    if not line.segments or len(line.segments) >= len(last[0].segments):
        return False
    if any(w.text.endswith(":") for w in line.words) or any(
        label_words(s, labels) for s in line.segments
    ):
        return False
    # top to top (a box's bottom moves with descenders: "Office chair" has none), measured
    # over the wrapped text's own x-range (a tilted scan's row is higher at one end)
    x0, x1 = line.box[0], line.box[2]
    pitches = [_top(b[0], x0, x1) - _top(a[-1], x0, x1) for a, b in itertools.pairwise(rows)]
    below = _top(line, x0, x1) - _top(last[-1], x0, x1)
    if not pitches or below > 0.8 * statistics.median(pitches):
        return False
    columns = _columns([row[0] for row in rows])
    return all(
        sum(overlaps_x(s.box, (c[0], 0.0, c[1], 0.0)) for c in columns) == 1 for s in line.segments
    )


def _grid(line: Line, boxes: Sequence[Box]) -> list[float]:
    """Left edges of the drawn boxes the line's segments sit in."""
    edges = []
    for segment in line.segments:
        cx, cy = (segment.box[0] + segment.box[2]) / 2, (segment.box[1] + segment.box[3]) / 2
        edges += [b[0] for b in boxes if b[0] <= cx <= b[2] and b[1] <= cy <= b[3]][:1]
    return edges


def _same_grid(a: list[float], b: list[float], tolerance: float = 8.0) -> bool:
    """Whether two rows sit in one drawn grid (rows without boxes always do)."""
    if not a or not b:
        return True
    return all(any(abs(x - y) <= tolerance for y in b) for x in a) or all(
        any(abs(x - y) <= tolerance for y in a) for x in b
    )


def find_tables(
    lines: list[Line], labels: frozenset[str], min_columns: int = 3, boxes: Sequence[Box] = ()
) -> tuple[list[Table], set[int]]:
    """Tables and the indices of the lines they took; a table does not run from one
    drawn grid into another (a form's header boxes into its item grid)."""
    tables: list[Table] = []
    taken: set[int] = set()
    run: list[list[int]] = []  # rows: the row's line index, then its wrapped lines

    def label_row(line: Line) -> bool:
        return sum(label_words(s, labels) == len(s.words) for s in line.segments) >= 2

    def fields_over_values(rows: list[list[Line]]) -> bool:
        """Two rows, the first with two or more labels: fields over their values."""
        return len(rows) == 2 and label_row(rows[0][0])

    def close() -> None:
        rows = [[lines[i] for i in row] for row in run]
        if (
            len(rows) >= 2
            and max(len(r[0].segments) for r in rows) >= min_columns
            and not fields_over_values(rows)
        ):
            table = _table(rows)
            if len(table.rows[0]) >= 2:
                tables.append(table)
                taken.update(i for row in run for i in row)
        run.clear()

    for i, line in enumerate(lines):
        if run and _wraps(line, [[lines[j] for j in row] for row in run], labels):
            run[-1].append(i)
            continue
        if not _table_candidate(line, labels):
            close()
            continue
        if run:
            previous = lines[run[-1][-1]]
            gap = line.box[1] - previous.box[3]
            columns = [s.box for row in run for s in lines[row[0]].segments]
            if (
                gap > 2.5 * max(previous.height, line.height)
                or not _aligned(line, columns)
                or not _same_grid(_grid(previous, boxes), _grid(line, boxes))
                or label_row(line)
            ):
                close()
        run.append([i])
    close()
    return tables, taken
