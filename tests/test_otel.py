"""Spans leave over real OTLP/HTTP: a receiver on 127.0.0.1 decodes the protobuf export
that corral's SDK exporter sends when observe.otlp_endpoint is set."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from corral.config import parse_config

from ._server import serve


def test_spans_are_exported_over_otlp_http() -> None:
    received: list[ExportTraceServiceRequest] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append(ExportTraceServiceRequest.FromString(body))
            reply = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: object) -> None:
            pass

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{receiver.server_address[1]}/v1/traces"
    config = parse_config(f"""
models:
  - name: embedder
    model: sentence-transformers/all-MiniLM-L6-v2
observe:
  otlp_endpoint: {endpoint}
""")
    try:
        with serve(config) as server:
            reply = httpx.post(server.v1 + "/embeddings", json={"input": "hello"})
            assert reply.status_code == 200
        # shutting down flushed the batch exporter
    finally:
        receiver.shutdown()
        receiver.server_close()
        thread.join()
    spans = [
        span
        for request in received
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    names = {span.name for span in spans}
    assert {"POST /v1/embeddings", "expert embedder"} <= names
    trace_ids = {span.trace_id.hex() for span in spans if span.name == "POST /v1/embeddings"}
    assert trace_ids == {reply.headers["x-corral-trace-id"]}
    service = {
        attribute.value.string_value
        for request in received
        for resource in request.resource_spans
        for attribute in resource.resource.attributes
        if attribute.key == "service.name"
    }
    assert service == {"corral"}
