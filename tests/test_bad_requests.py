"""A bad request hurts nobody else (issue 19): each input that once made a 500, dropped the
connection, failed other callers' requests or opened an expert's circuit is answered
over HTTP with a 4xx naming the field or limit, and the good requests around it are
served. One server (the built-in default config) for the whole module."""

from __future__ import annotations

import base64
import functools
import io
import json
import threading
from collections.abc import Callable
from typing import Any

import httpx
import hypothesis
import pytest
from hypothesis import strategies as st

from ._server import RunningServer

SURROGATE = '"\\ud800"'  # valid JSON, and no Unicode text


def _raw(server: RunningServer, path: str, body: str, **headers: str) -> httpx.Response:
    """``body`` sent as is: json= would refuse to encode a lone surrogate."""
    return httpx.post(server.url + path, content=body.encode(),
                      headers={"content-type": "application/json", **headers}, timeout=120)


# (path, a body with {} where the bad text goes, the field the 422 must name)
TEXT_FIELDS = [
    ("/v1/embeddings", '{"model": "embedder", "input": [%s]}', "input[0]"),
    ("/v1/embeddings", '{"model": "embedder", "input": %s}', "input"),
    ("/v1/rerank", '{"query": %s, "documents": ["a", "b"]}', "query"),
    ("/v1/rerank", '{"query": "q", "documents": ["a", %s]}', "documents[1]"),
    ("/v1/classify", '{"input": [%s], "labels": ["x", "y"]}', "input[0]"),
    ("/v1/classify", '{"input": ["t"], "labels": ["x", %s]}', "labels[1]"),
    ("/v1/ner", '{"input": [%s]}', "input[0]"),
    ("/v1/chat/completions", '{"messages": [{"role": "user", "content": %s}], "max_tokens": 2}',
     "messages[0].content"),
    ("/v1/chat/completions",
     '{"messages": [{"role": "user", "content": [{"type": "text", "text": %s}]}], '
     '"max_tokens": 2}', "messages[0].content[0].text"),
    ("/v1/completions", '{"prompt": %s, "max_tokens": 2}', "prompt"),
    ("/v2/embed", '{"model": "embedder", "texts": [%s], "input_type": "search_query"}',
     "texts[0]"),
    ("/embed", '{"inputs": [%s]}', "inputs[0]"),
    ("/rerank", '{"query": "q", "texts": [%s]}', "texts[0]"),
]


@pytest.mark.parametrize(("path", "body", "field"), TEXT_FIELDS)
def test_a_lone_surrogate_is_a_422_naming_the_field(
    default_server: RunningServer, path: str, body: str, field: str
) -> None:
    reply = _raw(default_server, path, body % SURROGATE)
    assert reply.status_code == 422, reply.text
    error = reply.json()["error"]
    assert error["param"] == field and "surrogate" in error["message"], error


def test_a_surrogate_pair_is_text(default_server: RunningServer) -> None:
    reply = _raw(default_server, "/v1/embeddings", '{"model": "embedder", "input": "\\ud83d\\ude00"}')
    assert reply.status_code == 200, reply.text


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/forecast", '{"series": [[1, 2, NaN, 4]], "horizon": 2}', "series[0][2]"),
        ("/v1/forecast", '{"series": [[1, 2, 3, 1e999]], "horizon": 2}', "series"),
        ("/v1/anomaly/probe/fit", '{"data": [[1, Infinity], [2, 3]]}', "data[0][1]"),
    ],
)
def test_a_number_that_is_not_finite_is_a_422(
    default_server: RunningServer, path: str, body: str, field: str
) -> None:
    reply = _raw(default_server, path, body)
    assert reply.status_code == 422 and reply.json()["error"]["param"] == field, reply.text


def test_a_huge_but_finite_ramp_is_a_422_not_a_500(default_server: RunningServer) -> None:
    ramp = [1.7e308 * (i / 10) for i in range(11)]
    reply = httpx.post(default_server.v1 + "/forecast",
                       json={"series": [ramp], "horizon": 4}, timeout=60)
    assert reply.status_code in (200, 422), reply.text
    if reply.status_code == 422:
        assert reply.json()["error"]["message"], reply.text


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/chat/completions",
         {"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, "stream"),
        ("/v1/classify", {"input": ["t"], "labels": ["a", "b"], "multi_label": "yes"},
         "multi_label"),
        ("/v1/rerank", {"query": "q", "documents": ["a"], "return_documents": "true"},
         "return_documents"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}],
                                  "logprobs": 1}, "logprobs"),
    ],
)
def test_booleans_are_strict(
    default_server: RunningServer, path: str, body: dict[str, Any], field: str
) -> None:
    reply = httpx.post(default_server.url + path, json=body, timeout=60)
    assert reply.status_code == 422, reply.text
    assert field in reply.json()["error"]["message"], reply.text


def test_a_body_that_is_not_json_is_a_400(default_server: RunningServer) -> None:
    for body in ["{not json", "", "\xff\xfe"]:
        reply = httpx.post(default_server.v1 + "/embeddings", content=body.encode("latin-1"),
                           headers={"content-type": "application/json"}, timeout=30)
        assert reply.status_code == 400, (body, reply.text)


@pytest.mark.parametrize(
    "template", ["{}{0.__class__}", "{} {x}", "{} {", "{}{}", "no slot", "{0}", "{label}{}"]
)
def test_hypothesis_template_is_no_format_string(
    default_server: RunningServer, template: str
) -> None:
    body = {"input": ["my card was charged twice"], "labels": ["billing", "bug"],
            "hypothesis_template": template}
    reply = httpx.post(default_server.v1 + "/classify", json=body, timeout=60)
    assert reply.status_code == 422, reply.text
    assert "hypothesis_template" in reply.json()["error"]["message"], reply.text


def test_a_template_slot_is_filled_by_replacement(default_server: RunningServer) -> None:
    for template in ["This text is about {}.", "Topic: {label}"]:
        body = {"input": ["my card was charged twice"], "labels": ["billing", "weather"],
                "hypothesis_template": template}
        reply = httpx.post(default_server.v1 + "/classify", json=body, timeout=60)
        assert reply.status_code == 200, reply.text
        assert reply.json()["data"][0]["label"] == "billing"


def test_duplicate_labels_are_a_422(default_server: RunningServer) -> None:
    body = {"input": ["t"], "labels": ["a", "b", "a"]}
    reply = httpx.post(default_server.v1 + "/classify", json=body, timeout=60)
    assert reply.status_code == 422 and "twice" in reply.text, reply.text


def _concurrently(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    replies: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        replies[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return replies


@pytest.mark.parametrize(
    ("path", "good", "bad"),
    [
        ("/v1/embeddings", '{"model": "embedder", "input": ["text %d"]}',
         '{"model": "embedder", "input": ["x", %s]}'),
        ("/v1/classify", '{"input": ["ticket %d"], "labels": ["billing", "bug"]}',
         '{"input": [%s], "labels": ["billing", "bug"]}'),
        ("/v1/ner", '{"input": ["Tim Cook %d visited Paris"]}', '{"input": [%s]}'),
    ],
)
def test_eleven_good_and_one_bad_concurrent_requests(
    default_server: RunningServer, path: str, good: str, bad: str
) -> None:
    calls: list[Callable[[], httpx.Response]] = [
        functools.partial(_raw, default_server, path, good % i) for i in range(11)
    ]
    calls.append(functools.partial(_raw, default_server, path, bad % SURROGATE))
    replies = _concurrently(calls)
    assert [r.status_code for r in replies[:11]] == [200] * 11, [r.text for r in replies]
    assert replies[11].status_code == 422


@pytest.mark.parametrize(
    ("path", "good", "bad"),
    [
        ("/v1/embeddings", '{"model": "embedder", "input": "fine"}',
         '{"model": "embedder", "input": [%s]}'.replace("%s", SURROGATE)),
        ("/v1/chat/completions",
         '{"model": "fast", "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 2}',
         '{"model": "fast", "messages": [{"role": "user", "content": %s}], "max_tokens": 2}'
         .replace("%s", SURROGATE)),
        ("/v1/chat/completions",
         '{"model": "fast", "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 2}',
         '{"model": "fast", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2, '
         '"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": '
         '"object", "properties": {"v": {"type": "string", "pattern": "^(?=a)$"}}}}}], '
         '"tool_choice": "required"}'),
    ],
)
def test_twenty_bad_requests_do_not_open_the_circuit(
    default_server: RunningServer, path: str, good: str, bad: str
) -> None:
    for _ in range(20):
        assert _raw(default_server, path, bad).status_code == 422
    reply = _raw(default_server, path, good)
    assert reply.status_code == 200, reply.text


# --- limits that bound work -----------------------------------------------------------
def test_a_forecast_past_the_work_limit_is_a_413_before_it_runs(
    default_server: RunningServer,
) -> None:
    series = [[float(i % 7) for i in range(1500)] for _ in range(256)]
    reply = httpx.post(default_server.v1 + "/forecast",
                       json={"model": "forecaster", "series": series, "horizon": 10_000},
                       timeout=30)
    assert reply.status_code == 413, reply.text
    assert "max_forecast_points" in reply.json()["error"]["message"]


def test_an_anomaly_fit_past_the_work_limit_is_a_413(default_server: RunningServer) -> None:
    rows = [[float((i * j) % 5) for j in range(120)] for i in range(5_000)]  # x 2000 epochs
    reply = httpx.post(default_server.v1 + "/anomaly/too-much/fit",
                       json={"data": rows, "options": {"epochs": 2000}}, timeout=30)
    assert reply.status_code == 413, reply.text
    assert "max_fit_work" in reply.json()["error"]["message"]


def _png(width: int, height: int) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (width, height), 255).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_five_24_megapixel_images_are_a_413_naming_max_request_pixels(
    default_server: RunningServer,
) -> None:
    image = _png(6000, 4000)
    reply = httpx.post(default_server.v1 + "/detect", json={"images": [image] * 5}, timeout=60)
    assert reply.status_code == 413, reply.text
    assert "max_request_pixels" in reply.json()["error"]["message"]


def test_a_1x20000_png_document_is_a_422(default_server: RunningServer) -> None:
    reply = httpx.post(default_server.v1 + "/documents/extract",
                       json={"document": _png(1, 20_000)}, timeout=120)
    assert reply.status_code == 422, reply.text


def _looping_pdf() -> bytes:
    """A PDF whose page tree holds itself (/Kids points back at the /Pages node)."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
              % (len(objects) + 1, xref))
    return out.getvalue()


def test_a_pdf_page_tree_loop_is_a_422(default_server: RunningServer) -> None:
    document = "data:application/pdf;base64," + base64.b64encode(_looping_pdf()).decode()
    reply = httpx.post(default_server.v1 + "/documents/extract", json={"document": document},
                       timeout=120)
    assert reply.status_code == 422 and "page tree" in reply.text, reply.text


# --- unicode edge cases on every text field -------------------------------------------
_EDGES = ["\ud800", "\udfff", "\x00", "\u202e", "\u200f", "\ufeff", "\U0001f600", "\u0301",
          "\ufffd", "\uffff", "\x7f", "\n", "\r", "\t", "ﷺ", "\U000e0001"]
_TEXTS = st.one_of(
    st.text(st.sampled_from(_EDGES) | st.characters(codec=None), min_size=0, max_size=40),
    st.just("\u202e" * 1_000_000),  # 1 MB of right-to-left overrides
    st.just("a\x00" * 500_000),
)


@pytest.mark.parametrize(("path", "body", "field"), TEXT_FIELDS, ids=[f"{p} {f}" for p, _, f
                                                                    in TEXT_FIELDS])
def test_unicode_edge_cases_never_make_a_5xx(
    default_server: RunningServer, path: str, body: str, field: str
) -> None:
    @hypothesis.settings(max_examples=12, deadline=None, derandomize=True, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(text=_TEXTS)
    def probe(text: str) -> None:
        reply = _raw(default_server, path, body % json.dumps(text))  # ASCII: \ud800 escaped
        assert reply.status_code < 500, (text[:40], reply.text)

    probe()
