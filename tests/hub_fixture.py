"""Test fixtures speaking two real protocols on 127.0.0.1, for download tests.

``HubFixture``: the Hugging Face Hub's file API as ``huggingface_hub`` 2.x calls it:
``GET /api/models/{repo}/revision/{rev}?blobs=true`` (model info with siblings and
sizes), ``HEAD``/``GET /{repo}/resolve/{rev}/{file}`` (``X-Repo-Commit``, ``ETag``,
``Content-Length``; ``Range`` requests answered with 206). Faults can be set per file:
an HTTP status, or a connection dropped after some bytes (the client must resume).

``OllamaFixture``: Ollama's ``GET /api/tags`` and ``POST /api/pull`` (NDJSON progress).
Neither is part of corral; both record every request so tests can assert on them.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_COMMIT = "c0ffee" + "0" * 34


@dataclass
class Repo:
    files: dict[str, bytes]
    commit: str = _COMMIT
    gated_token: str | None = None  # requests need "Bearer <token>"
    listing_status: int | None = None  # model-info answers this status instead
    advertised: dict[str, int] = field(default_factory=dict)  # sizes listed but not served


@dataclass
class Fault:
    status: int | None = None
    drop_after: int | None = None  # bytes sent before the connection is cut (first GET only)
    fired: bool = False


def folder_files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


class HubFixture:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.faults: dict[tuple[str, str], Fault] = {}
        self.log: list[tuple[str, str, dict[str, str]]] = []
        self.url = ""

    def requests(self, method: str | None = None, contains: str = "") -> list[str]:
        return [p for m, p, _ in self.log if (method is None or m == method) and contains in p]

    def handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _serve(self, *, body: bool) -> None:
                hub.log.append((self.command, self.path, dict(self.headers)))
                path = self.path.split("?", 1)[0]
                if path == "/api/models":
                    return self._json(200, [])
                info = re.fullmatch(r"/api/models/([^/]+/[^/]+)/revision/([^/]+)", path)
                if info:
                    return self._info(info.group(1), info.group(2))
                resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
                if resolve:
                    return self._file(*resolve.groups(), body=body)
                self._json(404, {"error": "not found"})

            def _repo(self, repo_id: str) -> Repo | None:
                repo = hub.repos.get(repo_id)
                if repo is None:
                    self._json(404, {"error": "Repository not found"}, code="RepoNotFound")
                    return None
                if repo.gated_token and self.headers.get("Authorization") != (
                    f"Bearer {repo.gated_token}"
                ):
                    self._json(401, {"error": "Access to this repo is restricted"}, "GatedRepo")
                    return None
                return repo

            def _info(self, repo_id: str, revision: str) -> None:
                repo = self._repo(repo_id)
                if repo is None:
                    return
                if repo.listing_status:
                    return self._json(repo.listing_status, {"error": "Internal Error"})
                if revision not in ("main", repo.commit):
                    return self._json(404, {"error": "Invalid rev id"}, "RevisionNotFound")
                siblings = [
                    {"rfilename": name, "size": len(data), "blobId": _sha1(data)}
                    for name, data in repo.files.items()
                ] + [{"rfilename": n, "size": s} for n, s in repo.advertised.items()]
                self._json(200, {"id": repo_id, "sha": repo.commit, "siblings": siblings})

            def _file(self, repo_id: str, revision: str, name: str, *, body: bool) -> None:
                repo = self._repo(repo_id)
                if repo is None:
                    return
                fault = hub.faults.get((repo_id, name))
                if fault is not None and fault.status:
                    return self._json(fault.status, {"error": "fault"}, "EntryNotFound")
                data = repo.files.get(name)
                if data is None or revision not in ("main", repo.commit):
                    return self._json(404, {"error": "Entry not found"}, "EntryNotFound")
                start = 0
                ranged = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
                if ranged:
                    start = int(ranged.group(1))
                self.send_response(206 if ranged else 200)
                self.send_header("X-Repo-Commit", repo.commit)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(data) - start))
                if ranged:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if not body:
                    return
                chunk = data[start:]
                if fault is not None and fault.drop_after is not None and not fault.fired:
                    fault.fired = True
                    self.wfile.write(chunk[: fault.drop_after])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(chunk)

            def _json(self, status: int, payload: Any, code: str | None = None) -> None:
                raw = json.dumps(payload).encode()
                self.send_response(status)
                if code:
                    self.send_header("X-Error-Code", code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(raw)

        return Handler


@dataclass
class OllamaFixture:
    """Knows ``pullable`` models (name -> layer sizes); holds those pulled so far."""

    pullable: dict[str, list[int]]
    held: set[str] = field(default_factory=set)
    log: list[tuple[str, str, str]] = field(default_factory=list)
    url: str = ""

    def handler(self) -> type[BaseHTTPRequestHandler]:
        ollama = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:
                ollama.log.append(("GET", self.path, ""))
                if self.path == "/api/tags":
                    models = [{"name": n, "model": n, "size": 1} for n in sorted(ollama.held)]
                    return self._send(200, json.dumps({"models": models}).encode())
                self._send(404, b'{"error": "not found"}')

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.loads(raw or b"{}")
                ollama.log.append(("POST", self.path, json.dumps(body)))
                if self.path != "/api/pull":
                    return self._send(404, b'{"error": "not found"}')
                model = body.get("model") or body.get("name")
                events: list[dict[str, Any]] = [{"status": "pulling manifest"}]
                if model not in ollama.pullable:
                    events.append({"error": "pull model manifest: file does not exist"})
                else:
                    for i, size in enumerate(ollama.pullable[model]):
                        digest = "sha256:" + (str(i + 1) * 64)[:64]
                        for done in (0, size // 2, size):
                            events.append(
                                {"status": f"pulling {digest[7:19]}", "digest": digest,
                                 "total": size, "completed": done}
                            )
                    events += [{"status": "verifying sha256 digest"},
                               {"status": "writing manifest"}, {"status": "success"}]
                    ollama.held.add(model)
                self._send(200, b"".join(json.dumps(e).encode() + b"\n" for e in events),
                           "application/x-ndjson")

            def _send(self, status: int, raw: bytes, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        return Handler


@contextmanager
def running(fixture: Any) -> Iterator[Any]:
    """Serve ``fixture`` (HubFixture or OllamaFixture) on a free port of 127.0.0.1."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), fixture.handler())
    server.daemon_threads = True
    fixture.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fixture
    finally:
        server.shutdown()
        server.server_close()


def _sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
