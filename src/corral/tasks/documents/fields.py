"""Typed fields: the values a request asks for by name (``due_date: date``,
``total: amount``), found on a page's layout by label, place and type.

For each field, every segment that *starts* with one of its labels (the longest label
of any requested field wins, so "Total due" is a total and "Due date" a due date; a
rate such as "(8%)" belongs to the label) is an occurrence. Its value is the first of,
in this order, that parses as the field's type (``values``):

1. the rest of the label's own segment ("Invoice # INV-7", "Date: 12/03/2024");
2. when the label sits in a drawn box (``rules``): the first line of words below it
   inside that box (a form's value under the label in the box's corner);
3. the next segment right on the same line, unless a column gutter lies between
   (``blocks.column_gutters``) or it is in another box, across a dotted leader
   ("TOTAL ...... 12.50"); else the line's last segment (a value at the right margin);
4. the first segment below it in the same column and box (overlapping it, within a
   few line heights), keeping only its words from the label's left edge on: a row of
   labels over their values.

A label right of this one skips the right-hand candidates; a label below stops the
search. The occurrence with the highest confidence (relation x recognition score x how
specific the label is) is the field. Without any labelled occurrence, ``seller`` is the
first line of the page's first unlabelled block that is not a title ("INVOICE"), and
``date`` the first date on the page not taken by another field.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from corral.errors import InvalidRequest
from corral.tasks.documents.field_schemas import BUILTIN_FIELDS, SCHEMAS, TITLES, FieldSpec
from corral.tasks.documents.layout import (
    Box,
    Layout,
    Segment,
    Word,
    is_leader,
    label_words,
    normalise_label,
    with_rate,
)
from corral.tasks.documents.values import VALUE_TYPES, day_first_hint, parse_value

__all__ = ["FieldResult", "find_fields", "resolve_fields"]

_GENERIC = frozenset({"no", "nr", "#", "number", "date", "due", "net", "from", "tax", "total"})
_MAX_LABEL_WORDS = 5


@dataclass(frozen=True)
class FieldResult:
    name: str
    type: str
    value: str | None  # as printed
    normalized: str | None  # ISO 8601 date, plain decimal amount, identifier, text
    currency: str | None
    confidence: float
    key: str | None  # the label it was found by (None: found without one)
    key_box: Box | None
    boxes: list[Box]


def resolve_fields(
    request: str | Sequence[tuple[str, str | None, Sequence[str] | None]],
) -> list[FieldSpec]:
    """Field specs for a schema name or (name, type, labels) triples; a built-in name
    keeps its type and labels unless given."""
    if isinstance(request, str):
        if request not in SCHEMAS:
            raise InvalidRequest(
                f"fields: unknown schema {request!r}; use one of {', '.join(SCHEMAS)} "
                "or a list of {name, type}",
                param="fields",
            )
        return [BUILTIN_FIELDS[name] for name in SCHEMAS[request]]
    specs = []
    for name, kind, labels in request:
        builtin = BUILTIN_FIELDS.get(name)
        if kind is not None and kind not in VALUE_TYPES:
            raise InvalidRequest(
                f"fields: {name!r} has type {kind!r}; use one of {', '.join(VALUE_TYPES)}",
                param="fields",
            )
        if builtin is None:
            words = tuple(labels or ()) or (name.replace("_", " "),)
            specs.append(FieldSpec(name, kind or "text", words))
        else:
            specs.append(
                replace(builtin, type=kind or builtin.type, labels=tuple(labels or builtin.labels))
            )
    return specs


@dataclass(frozen=True)
class _Found:
    confidence: float
    value: Segment
    normalized: str
    currency: str | None
    key: Segment | None


class _Page:
    """One page's layout with the lookups every field shares."""

    def __init__(self, layout: Layout, specs: list[FieldSpec]) -> None:
        self.layout = layout
        self.lines = layout.lines
        self.vocabulary: dict[str, list[int]] = {}
        for index, spec in enumerate(specs):
            for label in spec.labels:
                self.vocabulary.setdefault(normalise_label(label), []).append(index)
        self.labels = layout.labels | frozenset(self.vocabulary)
        self.day_first = day_first_hint([line.text for line in layout.lines])

    def match(self, segment: Segment) -> tuple[int, str, list[int]] | None:
        """(label words, the label, spec indices) when ``segment`` starts with a label."""
        words = segment.words
        for n in range(min(len(words), _MAX_LABEL_WORDS), 0, -1):
            label = normalise_label(" ".join(w.text for w in words[:n]))
            if label in self.vocabulary:
                return with_rate(words, n), label, self.vocabulary[label]
        return None

    def is_label(self, segment: Segment) -> bool:
        """Whether the segment is a label and nothing else."""
        match = self.match(segment)
        whole = len(segment.words)
        return label_words(segment, self.labels) == whole or (
            match is not None and match[0] == whole
        )

    def parse(self, kind: str, words: list[Word]) -> tuple[str, str | None] | None:
        text = " ".join(w.text for w in words)
        if kind == "text" and (
            not any(c.isalpha() for c in text) or normalise_label(text) in TITLES
        ):
            return None
        return parse_value(kind, text, day_first=self.day_first)

    def candidates(self, i: int, k: int, n: int) -> Iterable[tuple[float, Segment, str]]:
        """The label's possible values, most likely first, with their relation to it
        (own segment, right, below; see module docs)."""
        line = self.lines[i]
        segment = line.segments[k]
        if n < len(segment.words):
            yield 0.95, Segment(segment.words[n:]), "own"
        box = self.box_of(segment)
        if box is not None:
            inside = self.in_box(box, segment)
            if inside is not None:
                yield 0.92, inside, "box"
        if (i, k) not in self.layout.gutters and k + 1 < len(line.segments):
            for weight, right in ((0.9, line.segments[k + 1]), (0.8, line.segments[-1])):
                if self.box_of(right) == box:
                    yield weight, right, "right"
        below = self.below(i, segment)
        if below is not None and self.box_of(below) == box:
            yield 0.85, below, "below"

    def box_of(self, segment: Segment) -> int | None:
        """The index of the drawn box holding the segment's centre (None: no box)."""
        x0, y0, x1, y1 = segment.box
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        inner = [
            (b[2] - b[0]) * (b[3] - b[1])
            if b[0] <= cx <= b[2] and b[1] <= cy <= b[3]
            else float("inf")
            for b in self.layout.boxes
        ]
        smallest = min(range(len(inner)), key=inner.__getitem__, default=None)
        return None if smallest is None or inner[smallest] == float("inf") else smallest

    def in_box(self, box: int, key: Segment) -> Segment | None:
        """The first line of words in the box below the label (a form's value)."""
        x0, _, x1, y1 = self.layout.boxes[box]
        below = [
            w
            for line in self.lines
            for w in line.words
            if x0 <= (w.box[0] + w.box[2]) / 2 <= x1
            and key.box[3] - 0.3 * key.height <= w.cy <= y1
            and w.box[1] >= key.box[1] + 0.5 * key.height
            and not is_leader(w)
        ]
        if not below:
            return None
        top = min(below, key=lambda w: w.box[1])
        first = [w for w in below if abs(w.cy - top.cy) < 0.6 * top.height]
        return Segment(sorted(first, key=lambda w: w.box[0]))

    def below(self, i: int, key: Segment) -> Segment | None:
        height = key.box[3] - key.box[1]
        for j in range(i + 1, min(i + 4, len(self.lines))):
            line = self.lines[j]
            if j in self.layout.table_lines:
                return None
            for segment in line.segments:
                tall = max(height, segment.box[3] - segment.box[1])
                if segment.box[1] - key.box[3] > 2.5 * tall:
                    return None
                overlap = min(segment.box[2], key.box[2]) - max(segment.box[0], key.box[0])
                if overlap > 0 or abs(segment.box[0] - key.box[0]) < tall:
                    # words left of the label belong to another column's value
                    under = [w for w in segment.words if w.box[2] > key.box[0] - tall]
                    return Segment(under) if under else None
        return None


def _score(words: Iterable[Word]) -> float:
    return statistics.fmean(w.score for w in words)


def find_fields(layout: Layout, specs: list[FieldSpec]) -> list[FieldResult]:
    """Each requested field's best value on the page (``value`` None: not found)."""
    page = _Page(layout, specs)
    found: dict[int, _Found] = {}
    for i, line in enumerate(page.lines):
        if i in layout.table_lines:
            continue
        for k, segment in enumerate(line.segments):
            match = page.match(segment)
            if match is None:
                continue
            n, label, indices = match
            key = Segment(segment.words[:n])
            specific = 0.9 if label in _GENERIC else 1.0
            for index in indices:
                hit = _value(page, specs[index].type, i, k, n)
                if hit is None:
                    continue
                weight, value, (normalized, currency) = hit
                confidence = weight * specific * _score(key.words + value.words)
                if index not in found or confidence > found[index].confidence:
                    found[index] = _Found(confidence, value, normalized, currency, key)
    for index, spec in enumerate(specs):
        if index not in found and spec.fallback is not None:
            taken = {f.normalized for f in found.values()}
            fallback = _fallback(page, spec, taken)
            if fallback is not None:
                found[index] = fallback
    return [_result(spec, found.get(index)) for index, spec in enumerate(specs)]


def _value(
    page: _Page, kind: str, i: int, k: int, n: int
) -> tuple[float, Segment, tuple[str, str | None]] | None:
    blocked = False  # a label right of this one: its value is not on this line
    for weight, candidate, relation in page.candidates(i, k, n):
        if relation != "own" and page.is_label(candidate):
            if relation == "below":
                return None
            blocked = True
            continue
        if blocked and relation == "right":
            continue
        parsed = page.parse(kind, candidate.words)
        if parsed is not None:
            return weight, candidate, parsed
    return None


def _fallback(page: _Page, spec: FieldSpec, taken: set[str]) -> _Found | None:
    if spec.fallback == "header_block":
        for block in page.layout.blocks:
            if block.label is not None:
                continue
            first = block.segments[0]
            if page.is_label(first) or any(
                parse_value(kind, first.text) for kind in ("date", "amount")
            ):
                continue
            parsed = page.parse("text", first.words)
            if parsed is not None:
                return _Found(0.6 * _score(first.words), first, parsed[0], None, None)
        return None
    for line in page.lines:  # first_date
        for segment in line.segments:
            parsed = page.parse(spec.type, segment.words)
            if parsed is not None and parsed[0] not in taken:
                return _Found(0.5 * _score(segment.words), segment, parsed[0], None, None)
    return None


def _result(spec: FieldSpec, found: _Found | None) -> FieldResult:
    if found is None:
        return FieldResult(spec.name, spec.type, None, None, None, 0.0, None, None, [])
    key = found.key
    return FieldResult(
        spec.name,
        spec.type,
        found.value.text,
        found.normalized,
        found.currency,
        round(found.confidence, 4),
        None if key is None else key.text.rstrip(":").strip(),
        None if key is None else key.box,
        [found.value.box],
    )
