"""Reading a page as a layout, not as flat text: lines, key/value pairs and tables from
word boxes alone (any OCR engine or a PDF text layer gives those).

* **Lines**: words whose vertical extents overlap join a line, chained word to word from
  left to right, so a slightly rotated scan still reads as one line. Lines are in reading
  order (top to bottom); words in a line left to right.
* **Segments**: a line splits where the gap between two words is wider than its text is
  tall: "Invoice Number:" and "INV-001" far to its right are two segments of one line.
  A dotted leader or a rule ("TOTAL ....... 12.50", also run together as
  "TOTAL.....12.50") is split off its words, belongs to no segment and ends one.
* **Key/value**: a label is a segment whose words end with ``:`` ("Date:"), or whose
  first words are in the label vocabulary ("Invoice Number", "Total", the built-in
  fields' labels such as "No.", "Date of issue"; a rate after it, "Tax (8%)", is part of
  the label). Its value is the rest of its segment, else the nearest segment to its
  right on the same line unless a column gutter lies between (``blocks``), else the
  segment directly below it.
* **Tables**: consecutive lines of two or more segments (one of them with at least
  ``min_columns``) whose segments line up in x. Columns are the union of the rows'
  segment x-ranges; each segment becomes the cell of the column it falls in. A line of
  labels only ("Invoice Number  Date  Due Date", values below), a label followed by its
  value, or a summary line (Subtotal, Tax, Total) is not a table row. A
  line that sits closer under a row than the rows sit to each other, whose segments
  each fall under one column and hold no label, is that row wrapped: its text continues
  the row's cells (a two-line description) instead of ending the table.

Tables are found by ``tables.find_tables``, blocks and column gutters by ``blocks``;
``analyse`` runs them all. Coordinates are pixels, origin top-left, boxes
``(x0, y0, x1, y1)``.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from corral.tasks.documents.field_schemas import BUILTIN_FIELDS, SUMMARY_LABELS

if TYPE_CHECKING:
    from corral.tasks.documents.blocks import Block

__all__ = [
    "DEFAULT_LABELS",
    "KeyValue",
    "Layout",
    "Line",
    "Segment",
    "Table",
    "Word",
    "analyse",
    "group_lines",
    "is_leader",
    "is_summary",
    "label_words",
    "normalise_label",
    "overlaps_x",
    "union",
    "with_rate",
]

Box = tuple[float, float, float, float]

DEFAULT_LABELS: tuple[str, ...] = (
    "invoice number", "invoice no", "invoice #", "invoice id", "invoice date", "date",
    "due date", "due", "total", "subtotal", "sub total", "tax", "vat", "amount due",
    "balance due", "total due", "grand total", "po number", "order number", "order no",
    "receipt number", "receipt no", "account number", "customer id", "reference",
    "bill to", "ship to", "phone", "email", "terms",
)  # fmt: skip
DEFAULT_LABELS += tuple(
    label
    for label in dict.fromkeys(
        [*(lb for spec in BUILTIN_FIELDS.values() for lb in spec.labels), *SUMMARY_LABELS]
    )
    if label not in DEFAULT_LABELS and label not in ("company", "paid", "balance", "order")
)  # the built-in fields' labels: "Date of issue", "No.", "Tax (8%)", "Pay by", ...

# a run of dots, dashes or underscores: a leader ("TOTAL ....... 12.50") or a rule
LEADER = re.compile(r"[.·…_\-=*~]{3,}")


@dataclass(frozen=True)
class Word:
    text: str
    box: Box
    score: float = 1.0

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def cy(self) -> float:
        return (self.box[1] + self.box[3]) / 2


def union(boxes: Iterable[Box]) -> Box:
    """The smallest box holding all of ``boxes``."""
    x0s, y0s, x1s, y1s = zip(*boxes, strict=True)
    return (min(x0s), min(y0s), max(x1s), max(y1s))


@dataclass
class Segment:
    """Words of one line close enough together to be one phrase (a key, a value, a cell)."""

    words: list[Word]

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)

    @property
    def box(self) -> Box:
        return union(w.box for w in self.words)

    @property
    def score(self) -> float:
        return statistics.fmean(w.score for w in self.words)

    @property
    def height(self) -> float:
        return statistics.median(w.height for w in self.words)


@dataclass
class Line:
    words: list[Word]
    segments: list[Segment] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)

    @property
    def box(self) -> Box:
        return union(w.box for w in self.words)

    @property
    def height(self) -> float:
        return statistics.median(w.height for w in self.words)


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: str
    key_box: Box
    value_box: Box
    confidence: float


@dataclass(frozen=True)
class Table:
    rows: list[list[str]]
    box: Box


@dataclass(frozen=True)
class Layout:
    lines: list[Line]
    key_values: list[KeyValue]
    tables: list[Table]
    blocks: list[Block] = field(default_factory=list)
    table_lines: frozenset[int] = frozenset()
    gutters: frozenset[tuple[int, int]] = frozenset()  # (line, segment): a column gap after it
    labels: frozenset[str] = frozenset()
    boxes: list[Box] = field(default_factory=list)  # drawn boxes (a form's), top to bottom

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)


def _vertical_overlap(a: Box, b: Box) -> float:
    """Shared height over the smaller height (1.0: one spans the other)."""
    shared = min(a[3], b[3]) - max(a[1], b[1])
    return max(0.0, shared) / max(1e-6, min(a[3] - a[1], b[3] - b[1]))


def is_leader(word: Word) -> bool:
    """A word that is only a dotted leader or a rule ("........", "-----")."""
    return LEADER.fullmatch(word.text) is not None


def split_leaders(word: Word) -> list[Word]:
    """ "TOTAL.......12.50" as three words: the label, the leader, the value (boxes in
    proportion to their characters)."""
    parts = [p for p in re.split(f"({LEADER.pattern})", word.text) if p]
    if len(parts) == 1:
        return [word]
    x0, y0, x1, y1 = word.box
    per_char = (x1 - x0) / max(1, len(word.text))
    pieces, start = [], 0
    for part in parts:
        left = x0 + start * per_char
        pieces.append(Word(part, (left, y0, left + len(part) * per_char, y1), word.score))
        start += len(part)
    return pieces


def group_lines(words: Sequence[Word], gap_factor: float = 0.8) -> list[Line]:
    """Words into lines in reading order, each split into segments (see module docs)."""
    chains: list[list[Word]] = []
    pieces = [p for w in words if w.text.strip() for p in split_leaders(w)]
    for word in sorted(pieces, key=lambda w: (w.box[0], w.box[1])):
        best, best_overlap = None, 0.5
        for chain in chains:
            last = chain[-1]
            if last.box[0] > word.box[0] + 1e-6:
                continue  # lines grow left to right only
            overlap = _vertical_overlap(last.box, word.box)
            if overlap > best_overlap:
                best, best_overlap = chain, overlap
        if best is None:
            chains.append([word])
        else:
            best.append(word)
    lines = [Line(chain) for chain in chains]
    lines.sort(key=lambda line: (statistics.fmean(w.cy for w in line.words), line.box[0]))
    for line in lines:
        line.segments = _segments(line, gap_factor)
    return lines


def _segments(line: Line, gap_factor: float) -> list[Segment]:
    """Leaders and rules belong to no segment and always end one."""
    limit = gap_factor * line.height
    segments: list[Segment] = []
    previous: Word | None = None
    for word in line.words:
        if is_leader(word):
            previous = None
            continue
        if previous is None or word.box[0] - previous.box[2] > limit:
            segments.append(Segment([word]))
        else:
            segments[-1].words.append(word)
        previous = word
    return segments


def normalise_label(text: str) -> str:
    """Lower case, punctuation but ``#`` dropped, spaces collapsed ("Invoice No." ->
    "invoice no")."""
    text = re.sub(r"(?<=[a-z])0|0(?=[a-z])", "o", text.lower())  # OCR's "0rder" is "order"
    text = re.sub(r"\d{1,2}(?:[.,]\d{1,2})?\s?%", " ", text)  # a rate: "Tax (8%)" is "tax"
    return " ".join(re.sub(r"[^\w#\s]", " ", text).replace("#", " # ").split())


_RATE = re.compile(r"\(?\d{1,2}(?:[.,]\d{1,2})?\s?%\)?[:.]*|\([^()]{1,12}\)[:.]*")


def with_rate(words: Sequence[Word], n: int) -> int:
    """``n`` plus the words after it that qualify the label: "Tax (8%)", "VAT 20%:"."""
    while n < len(words) and _RATE.fullmatch(words[n].text):
        n += 1
        if words[n - 1].text.endswith(":"):
            break
    return n


def label_words(segment: Segment, labels: frozenset[str]) -> int:
    """How many leading words of ``segment`` are a label (0: it holds none).

    A word ending with ':' closes a label ("Invoice Number:"); without one, the longest
    run of leading words in ``labels`` is a label when the segment is only that label or
    what follows it holds a digit ("Total $12.00"), so "Total due in 30 days" is not read
    as the key "Total" (it has a digit, but reading it so is the least bad guess)."""
    for i, word in enumerate(segment.words[:6]):
        if word.text.endswith(":") and (len(word.text) > 1 or i > 0):
            return i + 1
    for n in range(min(len(segment.words), 4), 0, -1):
        if normalise_label(" ".join(w.text for w in segment.words[:n])) in labels:
            n = with_rate(segment.words, n)
            rest = " ".join(w.text for w in segment.words[n:])
            if not rest or any(c.isdigit() for c in rest):
                return n
    return 0


_SUMMARY = frozenset(normalise_label(label) for label in SUMMARY_LABELS)


def is_summary(line: Line) -> bool:
    """Whether the line starts with a summary label (Subtotal, Tax, Total, Cash, ...):
    the summary block under items, never an item or a table row."""
    return bool(line.segments) and label_words(line.segments[0], _SUMMARY) > 0


def overlaps_x(a: Box, b: Box) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0])


def _value_below(
    lines: list[Line], start: int, key: Segment, skip: set[int], used: set[int]
) -> Segment | None:
    """The first segment under ``key`` (overlapping it in x) within a few line heights."""
    height = lines[start].height
    for j in range(start + 1, min(start + 4, len(lines))):
        line = lines[j]
        if line.box[1] - key.box[3] > 2.5 * height:
            return None
        if j in skip:
            continue
        for segment in line.segments:
            if id(segment) in used or not overlaps_x(segment.box, key.box):
                continue
            return segment
    return None


def find_key_values(
    lines: list[Line],
    labels: frozenset[str],
    skip: set[int] | None = None,
    gutters: frozenset[tuple[int, int]] = frozenset(),
) -> list[KeyValue]:
    """Labels and their values in reading order; lines in ``skip`` (tables) are neither,
    and a value right of its label is never across a column gutter."""
    skip = skip or set()
    used: set[int] = set()  # ids of segments already a key or a value
    label_counts = {
        id(s): label_words(s, labels)
        for i, line in enumerate(lines)
        if i not in skip
        for s in line.segments
    }
    pairs: list[KeyValue] = []
    for i, line in enumerate(lines):
        if i in skip:
            continue
        for k, segment in enumerate(line.segments):
            n = label_counts[id(segment)]
            if not n or id(segment) in used:
                continue
            used.add(id(segment))
            key_words, rest = segment.words[:n], segment.words[n:]
            value: Segment | None = None
            factor = 0.95
            if rest:
                value = Segment(rest)
            else:
                across = (i, k) in gutters
                right = line.segments[k + 1] if k + 1 < len(line.segments) and not across else None
                if right is not None and not label_counts[id(right)] and id(right) not in used:
                    value, factor = right, 0.9
                else:
                    below = _value_below(lines, i, segment, skip, used)
                    if below is not None and not label_counts.get(id(below)):
                        value, factor = below, 0.75
            if value is None:
                continue
            used.add(id(value))
            key = Segment(key_words)
            scores = [w.score for w in key_words + value.words]
            pairs.append(
                KeyValue(
                    key=key.text.rstrip(":").strip(),
                    value=value.text,
                    key_box=key.box,
                    value_box=value.box,
                    confidence=round(factor * statistics.fmean(scores), 4),
                )
            )
    return pairs


def analyse(
    words: Sequence[Word],
    labels: Iterable[str] = DEFAULT_LABELS,
    *,
    min_columns: int = 3,
    gap_factor: float = 0.8,
    boxes: Sequence[Box] = (),
) -> Layout:
    """Lines, tables, key/value pairs and blocks of one page's words."""
    # tables and blocks build on this module's lines and labels
    from corral.tasks.documents.blocks import column_gutters, find_blocks
    from corral.tasks.documents.tables import find_tables

    vocabulary = frozenset(normalise_label(label) for label in labels)
    lines = group_lines(words, gap_factor)
    tables, taken = find_tables(lines, vocabulary, min_columns, boxes)

    def only_label(segment: Segment) -> bool:
        return label_words(segment, vocabulary) == len(segment.words)

    gutters = frozenset(column_gutters(lines, only_label, taken))
    pairs = find_key_values(lines, vocabulary, taken, gutters)
    excluded = {id(s) for i in taken for s in lines[i].segments} | _inline_pair_segments(
        lines, pairs
    )
    blocks = find_blocks(lines, excluded, only_label)
    return Layout(lines, pairs, tables, blocks, frozenset(taken), gutters, vocabulary, list(boxes))


def _inline_pair_segments(lines: list[Line], pairs: list[KeyValue]) -> set[int]:
    """Ids of segments inside a key/value pair whose value is on the key's line."""
    inline = [union((kv.key_box, kv.value_box)) for kv in pairs if kv.value_box[1] < kv.key_box[3]]
    return {
        id(s)
        for line in lines
        for s in line.segments
        if any(
            b[0] <= s.box[0] + 0.5
            and s.box[2] <= b[2] + 0.5
            and b[1] <= s.box[1] + 0.5
            and s.box[3] <= b[3] + 0.5
            for b in inline
        )
    }
