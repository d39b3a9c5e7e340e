"""JSON bodies hold only text and numbers the experts can take: checked once, at the edge.

JSON can carry what Python's ``json`` accepts but no tokenizer, encoder or native
library can: a lone surrogate (``"\\ud800"`` is valid JSON, and no UTF-8 text), and
``NaN``, ``Infinity`` or an exponent past a float's range (``1e999`` reads as inf).
Deep inside a library they become ``UnicodeEncodeError`` or ``ValueError`` (a 500,
counted against the expert's circuit, failing a whole batch of other callers).
``JsonBodyCheck`` answers them with a 422 naming the field before any route runs, for
every JSON endpoint at once (OpenAI, Cohere/TEI, corral's task APIs, chat content
parts). A cheap byte scan comes first (12-15 ms for 4-5 MB); only a body that may hold
one is parsed here. An exponent that overflows (``1e999``) is left to the request models
(``allow_inf_nan=False``): scanning for it costs ten times more.
"""

from __future__ import annotations

import json
import re

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral.json_values import first_bad_value
from corral.server.errors import error_response

__all__ = ["JsonBodyCheck"]

# a \uD800-\uDFFF escape (a regex with a literal head: about 1 ms for 4 MB)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _is_json(scope: Scope) -> bool:
    """FastAPI reads a body as JSON when its type says JSON or when it has no type."""
    content_type = dict(scope.get("headers", [])).get(b"content-type", b"").lower()
    return not content_type or b"json" in content_type


class JsonBodyCheck:
    """422 naming the field for a JSON body with unencodable text or a non-finite number."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        if not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []  # joined once: += on bytes copies the body per chunk
        more = True
        while more:
            try:
                message = await receive()
            except HTTPException as exc:  # the body limit, while reading (BodySizeLimit)
                code = "payload_too_large" if exc.status_code == 413 else "invalid_request"
                await error_response(exc.status_code, str(exc.detail), code)(scope, receive, send)
                return
            if message["type"] != "http.request":  # the client went away while sending
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        problem = _problem(body)
        if problem is not None:
            where, says = problem
            response = error_response(422, says, "invalid_request", where)
            await response(scope, receive, send)
            return
        whole: Message = {"type": "http.request", "body": body, "more_body": False}
        await self.app(scope, _replay([whole], receive), send)


def _problem(body: bytes) -> tuple[str, str] | None:
    suspect = b"NaN" in body or b"Infinity" in body or _SURROGATE_ESCAPE.search(body)
    if not suspect:  # (an overflowing 1e999 is refused by the request models: allow_inf_nan)
        return None
    try:
        parsed = json.loads(body)  # NaN and Infinity read as floats: found with their path
    except (ValueError, RecursionError):  # not JSON: the route's parser says so (400)
        return None
    return first_bad_value(parsed)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` that first hands back what was already read."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
