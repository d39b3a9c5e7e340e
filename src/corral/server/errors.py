"""The one place where errors become HTTP responses (OpenAI's ``{"error": {...}}`` shape).

Typed corral errors keep their message; anything else is logged with its traceback
and the client gets a generic 500, never the traceback.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from corral.errors import CorralError
from corral.observe.trace import active_trace

log = logging.getLogger("corral.server")

_STATUS_CODES = {
    400: "invalid_request",
    401: "invalid_api_key",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    422: "invalid_request",
    429: "rate_limited",
}


def error_response(
    status: int,
    message: str,
    code: str,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    error = {"message": message, "type": kind, "param": param, "code": code}
    trace = active_trace()
    if trace is not None:  # so a report of the error can be matched to its trace
        error["trace_id"] = trace.id
    body = {"error": error}
    return JSONResponse(body, status_code=status, headers=dict(headers) if headers else None)


async def _corral_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CorralError)
    retry_after = exc.retry_after  # 503 and 429 say when to come back
    headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after else None
    return error_response(exc.status_code, exc.message, exc.code, exc.param, headers)


# where the API lives, for the 404 of a path that matches no route
_PREFIXES = (
    "/v1 (OpenAI and corral's task APIs), /v2 (Cohere), /embed /rerank /embeddings /info "
    "/health (TEI, Infinity), /healthz /readyz /metrics; every operation is listed at /docs"
)


def _not_json(exc: RequestValidationError) -> str | None:
    """What is wrong when the body is not JSON at all (a 400, not a field's 422)."""
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            where = error.get("loc", ("body", 0))[-1]
            reason = (error.get("ctx") or {}).get("error", "invalid JSON")
            return f"the body is not valid JSON ({reason} at character {where})"
        if tuple(error.get("loc", ())) == ("body",) and isinstance(error.get("input"), bytes):
            return "the body is not JSON: send a JSON object with Content-Type: application/json"
        if tuple(error.get("loc", ())) == ("body",) and error.get("type") == "missing":
            return "the body is empty: send a JSON object with Content-Type: application/json"
    return None


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    not_json = _not_json(exc)
    if not_json is not None:
        return error_response(400, not_json, "invalid_json")
    problems = []
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ()) if p != "body"]
        problems.append(f"{'.'.join(loc) or 'body'}: {error.get('msg')}")
    first_param = ".".join(str(p) for p in exc.errors()[0].get("loc", ())[1:2]) or None
    return error_response(422, "; ".join(problems), "invalid_request", first_param)


async def _model_validation_error(request: Request, exc: Exception) -> JSONResponse:
    """A request that passed the schema but not an expert's own input model: still the
    caller's to fix, so 422 naming the field, not a 500."""
    assert isinstance(exc, ValidationError)
    problems = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()]
    return error_response(422, "; ".join(problems), "invalid_request")


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _STATUS_CODES.get(exc.status_code, "error")
    message = str(exc.detail)
    route = f"{request.method} {request.url.path}"
    if exc.status_code == 404 and message == "Not Found":  # no route matched the path
        message = f"no route {route}; the API lives under {_PREFIXES}"
    elif exc.status_code == 405 and message == "Method Not Allowed":
        allowed = (exc.headers or {}).get("Allow") or (exc.headers or {}).get("allow", "")
        message = f"{route} is not allowed; {request.url.path} takes {allowed or 'other methods'}"
    return error_response(exc.status_code, message, code, headers=exc.headers)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(
        500, "internal server error; the server log has the details", "internal_error"
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(CorralError, _corral_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ValidationError, _model_validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
