"""YAML helpers that keep line numbers, so config errors can point at the line.

PyYAML's ``compose`` gives a node tree with source marks; we keep it next to the
plain data and look up ``(key, index, key...)`` paths as pydantic reports them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import yaml

Loc = tuple[str | int, ...]

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class LocatedYaml:
    """Parsed YAML data plus a way to find the line of any path in it."""

    def __init__(self, text: str) -> None:
        self.root = yaml.compose(text, Loader=yaml.SafeLoader)
        self.data: Any = yaml.safe_load(text) if self.root is not None else None

    def line_of(self, loc: Loc) -> int | None:
        """1-based line of the deepest node on ``loc`` (keys point at the key itself)."""
        node = self.root
        line = node.start_mark.line + 1 if node is not None else None
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                for key_node, value_node in node.value:
                    if key_node.value == part:
                        line = key_node.start_mark.line + 1
                        node = value_node
                        break
                else:
                    return line
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if part >= len(node.value):
                    return line
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                return line
        return line


def interpolate_env(
    data: Any, environ: Mapping[str, str] | None = None, loc: Loc = ()
) -> tuple[Any, list[tuple[Loc, str]]]:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string; return (data, missing)."""
    env = os.environ if environ is None else environ
    missing: list[tuple[Loc, str]] = []

    def substitute(match: re.Match[str], where: Loc) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        missing.append((where, name))
        return ""

    def walk(value: Any, where: Loc) -> Any:
        if isinstance(value, str):
            return _ENV_PATTERN.sub(lambda m: substitute(m, where), value)
        if isinstance(value, dict):
            return {k: walk(v, (*where, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*where, i)) for i, v in enumerate(value)]
        return value

    return walk(data, loc), missing
