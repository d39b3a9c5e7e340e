"""JSON schemas turned into llama.cpp grammars that cannot crash llama.cpp.

llama-cpp-python's schema converter writes GBNF that llama.cpp's own parser rejects for
ordinary inputs (a ``\\d`` inside a class, ``\\S``, ``\\.``, a property name or enum
value holding a backslash); llama.cpp then samples with no grammar and the process dies
(SIGSEGV). So, by construction:

- a schema is walked first (``check_schema``): bounded depth, size, enum counts and
  repetition counts, local ``$ref`` only, and every ``pattern`` compiled by a whitelist;
  anything else is an ``UnsafeSchema`` naming the schema path (a 422 for the caller);
- patterns are parsed by Python's own regex parser and written out as GBNF here: only
  literals, classes (``\\d \\w \\s`` and their negations, ranges), ``.``, groups,
  alternation, bounded quantifiers and ``^``/``$`` at the ends pass; lookarounds,
  backreferences, word boundaries, inline flags and the like are refused. The text they
  generate is valid JSON string content (``"`` and ``\\`` and control characters come
  out JSON-escaped);
- every string written into a grammar (property names, enum and const values, labels)
  is escaped for GBNF, backslash included (``schema_grammar``);
- the finished grammar is parsed by llama.cpp's own parser before it is used
  (``llama_parses``): whatever slipped through is a 422, not a segfault.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from typing import Any

__all__ = [
    "LIMITS", "UnsafeSchema", "check_schema", "llama_parses", "pattern_gbnf", "schema_grammar"
]

# bounds on what one schema may ask of the grammar (each is in the 422's message)
LIMITS = {
    "depth": 24,  # nesting of objects/arrays in the schema document
    "nodes": 4000,  # dicts, lists and values in the schema document
    "enum_values": 512,  # values in one enum
    "string_chars": 512,  # one property name, enum/const string, or pattern
    "repeat": 1000,  # minItems/maxItems/minLength/maxLength
    "pattern_repeat": 100,  # {n,m} in a pattern
    "pattern_depth": 16,  # nested groups in a pattern
}

_sre: Any = importlib.import_module("re._parser")  # Python's own regex parser
_c: Any = importlib.import_module("re._constants")

_MAX_CODE = 0x10FFFF
_SURROGATES = (0xD800, 0xDFFF)
# code points a JSON string cannot hold raw: they are written as their JSON escapes
_JSON_SPECIAL = frozenset([*range(0x20), 0x22, 0x5C])
# keys whose values are data, not subschemas: not walked for patterns
_VALUE_KEYS = frozenset({"enum", "const", "default", "examples", "description", "title"})
_COUNT_KEYS = ("minItems", "maxItems", "minLength", "maxLength", "minProperties",
               "maxProperties", "minContains", "maxContains")


class UnsafeSchema(ValueError):
    """The schema asks for something no safe grammar can express; ``path`` says where."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path or '(root)'}: {reason}")
        self.path = path
        self.reason = reason


# --- the schema walk ------------------------------------------------------------------
def check_schema(schema: Any) -> None:
    """Raise ``UnsafeSchema`` naming the first part of ``schema`` past a bound or outside
    the pattern whitelist."""
    walked = _walk(schema, "", 0, in_schema=True)
    for nodes, (path, depth, node, in_schema) in enumerate(walked, start=1):
        if nodes > LIMITS["nodes"]:
            raise UnsafeSchema(path, f"the schema has over {LIMITS['nodes']} nodes")
        if depth > LIMITS["depth"]:
            raise UnsafeSchema(path, f"the schema nests deeper than {LIMITS['depth']} levels")
        if isinstance(node, str) and len(node) > LIMITS["string_chars"] and in_schema:
            raise UnsafeSchema(path, f"a string over {LIMITS['string_chars']} characters")
        if isinstance(node, dict) and in_schema:
            _check_keywords(node, path)


def _walk(
    node: Any, path: str, depth: int, *, in_schema: bool
) -> Iterator[tuple[str, int, Any, bool]]:
    yield path, depth, node, in_schema
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(key, str):
                raise UnsafeSchema(path, "object keys must be strings")
            inner = in_schema and key not in ("description", "title", "examples", "default")
            yield from _walk(value, _join(path, key), depth + 1, in_schema=inner)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}[{index}]", depth + 1, in_schema=in_schema)


def _check_keywords(node: dict[str, Any], path: str) -> None:
    for name in node.get("properties") or {}:
        if len(name) > LIMITS["string_chars"]:
            raise UnsafeSchema(_join(path, "properties"),
                               f"a property name over {LIMITS['string_chars']} characters")
    enum = node.get("enum")
    if isinstance(enum, list) and len(enum) > LIMITS["enum_values"]:
        raise UnsafeSchema(_join(path, "enum"),
                           f"{len(enum)} values; at most {LIMITS['enum_values']}")
    for key in _COUNT_KEYS:
        value = node.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and (
            value > LIMITS["repeat"]
        ):
            raise UnsafeSchema(_join(path, key), f"at most {LIMITS['repeat']} for a grammar")
    ref = node.get("$ref")
    if isinstance(ref, str) and not ref.startswith("#"):
        raise UnsafeSchema(_join(path, "$ref"), "only local references ('#/...') are followed")
    pattern = node.get("pattern")
    if isinstance(pattern, str):
        try:
            pattern_gbnf(pattern)
        except UnsafeSchema as exc:
            raise UnsafeSchema(_join(path, "pattern"), exc.reason) from None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --- patterns -------------------------------------------------------------------------
def pattern_gbnf(pattern: str) -> str:
    """The GBNF (a rule body, without the string's quotes) of the JSON string contents
    ``pattern`` matches: ECMA-style, so an unanchored end may hold any text."""
    if len(pattern) > LIMITS["string_chars"]:
        raise UnsafeSchema("", f"a pattern over {LIMITS['string_chars']} characters")
    if any(_SURROGATES[0] <= ord(ch) <= _SURROGATES[1] for ch in pattern):
        raise UnsafeSchema("", "a pattern holds a lone surrogate")
    try:
        parsed = _sre.parse(pattern)
    except Exception as exc:  # re.error, RecursionError, OverflowError from the parser
        raise UnsafeSchema("", f"not a regular expression this server reads: {exc}") from None
    if parsed.state.flags & ~_c.SRE_FLAG_UNICODE:
        raise UnsafeSchema("", "inline flags ('(?i)' and the like) are not supported")
    items = list(parsed)
    anchored_start = bool(items) and _is_at(items[0], "start")
    anchored_end = bool(items) and _is_at(items[-1], "end")
    items = items[int(anchored_start) : len(items) - int(anchored_end)]
    body = _sequence(items, 0)
    anything = f"{_charset([(0, _MAX_CODE)])}*"
    parts = [] if anchored_start else [anything]
    parts.append(body or '""')
    if not anchored_end:
        parts.append(anything)
    return " ".join(parts)


def _is_at(item: tuple[Any, Any], where: str) -> bool:
    op, value = item
    if op is not _c.AT:
        return False
    if where == "start":
        return value in (_c.AT_BEGINNING, _c.AT_BEGINNING_STRING)
    return value in (_c.AT_END, _c.AT_END_STRING)


def _sequence(items: list[tuple[Any, Any]], depth: int) -> str:
    if depth > LIMITS["pattern_depth"]:
        raise UnsafeSchema("", f"groups nested deeper than {LIMITS['pattern_depth']}")
    return " ".join(_item(op, value, depth) for op, value in items)


def _item(op: Any, value: Any, depth: int) -> str:
    if op is _c.LITERAL:
        return _json_char(value)
    if op is _c.NOT_LITERAL:
        return _charset(_complement([(value, value)]))
    if op is _c.ANY:
        return _charset(_complement([(0x0A, 0x0A), (0x0D, 0x0D)]))
    if op is _c.IN:
        return _charset(_class_ranges(value))
    if op is _c.SUBPATTERN:
        _group, add_flags, del_flags, inner = value
        if add_flags or del_flags:
            raise UnsafeSchema("", "inline flags ('(?i)' and the like) are not supported")
        return f"({_sequence(list(inner), depth + 1) or chr(34) * 2})"
    if op is _c.BRANCH:
        _, branches = value
        alternatives = [_sequence(list(b), depth + 1) or '""' for b in branches]
        return "(" + " | ".join(alternatives) + ")"
    if op in (_c.MAX_REPEAT, _c.MIN_REPEAT, getattr(_c, "POSSESSIVE_REPEAT", _c.MAX_REPEAT)):
        return _repeat(value, depth)
    if op is _c.AT:
        raise UnsafeSchema("", "'^', '$' and '\\b' are supported only as the pattern's ends")
    raise UnsafeSchema("", f"{_NAMES.get(str(op), str(op).lower())} is not supported")


_NAMES = {
    "ASSERT": "a lookahead/lookbehind",
    "ASSERT_NOT": "a negative lookahead/lookbehind",
    "GROUPREF": "a backreference",
    "GROUPREF_EXISTS": "a conditional group",
    "ATOMIC_GROUP": "an atomic group",
}


def _repeat(value: Any, depth: int) -> str:
    low, high, inner = value
    most = LIMITS["pattern_repeat"]
    unbounded = high == _c.MAXREPEAT
    if low > most or (not unbounded and high > most):
        raise UnsafeSchema("", f"a repetition count over {most}")
    body = f"({_sequence(list(inner), depth + 1) or chr(34) * 2})"
    if (low, unbounded) == (0, True):
        return body + "*"
    if (low, unbounded) == (1, True):
        return body + "+"
    if (low, high) == (0, 1):
        return body + "?"
    if unbounded:
        return body + "{" + str(low) + ",}"
    return body + "{" + str(low) + "," + str(high) + "}"


# --- character sets -------------------------------------------------------------------
Ranges = list[tuple[int, int]]

_CATEGORIES: dict[str, Ranges] = {
    "CATEGORY_DIGIT": [(0x30, 0x39)],
    "CATEGORY_WORD": [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
    "CATEGORY_SPACE": [(0x09, 0x0D), (0x20, 0x20)],
}


def _class_ranges(items: list[tuple[Any, Any]]) -> Ranges:
    negate = bool(items) and items[0][0] is _c.NEGATE
    ranges: Ranges = []
    for op, value in items[int(negate):]:
        if op is _c.LITERAL:
            ranges.append((value, value))
        elif op is _c.RANGE:
            ranges.append((value[0], value[1]))
        elif op is _c.CATEGORY:
            name = str(value)
            positive = name.replace("_NOT_", "_")
            if positive not in _CATEGORIES:
                raise UnsafeSchema("", f"the class escape {name.lower()} is not supported")
            found = _CATEGORIES[positive]
            ranges.extend(_complement(found) if "_NOT_" in name else found)
        else:
            raise UnsafeSchema("", f"{str(op).lower()} inside a class is not supported")
    return _complement(ranges) if negate else _normalise(ranges)


def _normalise(ranges: Ranges) -> Ranges:
    merged: Ranges = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _complement(ranges: Ranges) -> Ranges:
    result: Ranges = []
    start = 0
    for low, high in _normalise(ranges):
        if low > start:
            result.append((start, low - 1))
        start = high + 1
    if start <= _MAX_CODE:
        result.append((start, _MAX_CODE))
    return result


def _subtract(ranges: Ranges, removed: Ranges) -> Ranges:
    keep = _complement(removed)
    out: Ranges = []
    for low, high in _normalise(ranges):
        for k_low, k_high in keep:
            lo, hi = max(low, k_low), min(high, k_high)
            if lo <= hi:
                out.append((lo, hi))
    return out


def _charset(ranges: Ranges) -> str:
    """GBNF for one character out of ``ranges``, as JSON string content: characters
    JSON must escape come out as their escapes, surrogates never."""
    special = [(c, c) for c in sorted(_JSON_SPECIAL)]
    plain = _subtract(ranges, [*special, _SURROGATES])
    escaped = sorted(c for c in _JSON_SPECIAL if any(lo <= c <= hi for lo, hi in ranges))
    alternatives = []
    if plain:
        alternatives.append("[" + "".join(_class_range(lo, hi) for lo, hi in plain) + "]")
    controls = [c for c in escaped if c < 0x20]
    if len(controls) == 0x20:  # every control character: its \u00XX escape
        alternatives.append('"\\\\u00" [0-1] [0-9A-Fa-f]')
        escaped = [c for c in escaped if c >= 0x20]
    alternatives.extend(_json_char(c) for c in escaped)
    if not alternatives:
        raise UnsafeSchema("", "a character class that matches nothing")
    return alternatives[0] if len(alternatives) == 1 else "(" + " | ".join(alternatives) + ")"


def _class_range(low: int, high: int) -> str:
    return _hex(low) if low == high else f"{_hex(low)}-{_hex(high)}"


def _hex(code: int) -> str:
    if code < 0x100:
        return f"\\x{code:02X}"
    if code < 0x10000:
        return f"\\u{code:04X}"
    return f"\\U{code:08X}"


def _json_char(code: int) -> str:
    """A GBNF literal for one character as it appears inside a JSON string."""
    if _SURROGATES[0] <= code <= _SURROGATES[1]:
        raise UnsafeSchema("", "a pattern holds a lone surrogate")
    return gbnf_literal(json.dumps(chr(code), ensure_ascii=False)[1:-1])


def gbnf_literal(text: str) -> str:
    """``text`` as a GBNF string literal: printable ASCII as is, ``"`` and ``\\``
    backslash-escaped, everything else as a hex escape."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        else:
            out.append(_hex(code))
    return '"' + "".join(out) + '"'


# --- the grammar ----------------------------------------------------------------------
def schema_grammar(schema: dict[str, Any]) -> str:
    """GBNF for ``schema`` (checked first) by llama-cpp-python's converter with its string
    escaping and pattern translation replaced by the safe ones above."""
    from llama_cpp.llama_grammar import SchemaConverter

    check_schema(schema)

    class SafeConverter(SchemaConverter):  # type: ignore[misc]
        def _format_literal(self, literal: str) -> str:
            return gbnf_literal(literal)

        def _visit_pattern(self, pattern: str, name: str) -> str:
            body = pattern_gbnf(pattern)
            return str(self._add_rule(name, f'"\\"" {body} "\\"" space'))

    converter = SafeConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    resolved = converter.resolve_refs(json.loads(json.dumps(schema)), "request")
    converter.visit(resolved, "")
    grammar = str(converter.format_grammar())
    if not llama_parses(grammar):
        raise UnsafeSchema("", "llama.cpp's grammar parser rejects this schema's grammar")
    return grammar


def llama_parses(grammar: str) -> bool:
    """Whether llama.cpp's own parser accepts ``grammar`` (also refusing left recursion).
    llama-cpp-python does not ask: on a grammar llama.cpp rejects it samples through a
    null pointer, so this is the last line before the crash."""
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(None, grammar.encode("utf-8"), b"root")
    if not sampler:
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True
