"""Schemathesis fuzzes every operation in /openapi.json against the default config over
real HTTP: no input makes a 5xx, and every response matches the documented schema.

Bounded for CI: a fixed number of examples per operation, generated completions capped
at a few tokens so the LLM's speed does not decide the test's length."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from corral.config import default_config

from ._server import RunningServer, serve

_EXAMPLES = 60
seen: Counter[str] = Counter()


@pytest.fixture(scope="module")
def fuzzed_server() -> Any:
    with serve(default_config()) as running:
        yield running


def test_no_input_makes_a_server_error(fuzzed_server: RunningServer) -> None:
    """Every operation, ``_EXAMPLES`` generated cases of valid and of invalid input."""
    schema = schemathesis.openapi.from_url(fuzzed_server.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
    for operation, mode in itertools.product(operations, modes):
        fuzz = hypothesis.given(case=operation.as_strategy(mode))(_check_case)
        settings = hypothesis.settings(
            max_examples=_EXAMPLES,
            deadline=None,
            suppress_health_check=list(hypothesis.HealthCheck),
            derandomize=True,
            database=None,
        )
        try:
            settings(fuzz)(server=fuzzed_server)
        except hypothesis.errors.Unsatisfiable:
            assert mode == schemathesis.GenerationMode.NEGATIVE  # no input to make invalid
    print(f"fuzz cases per operation: {dict(seen)}")
    assert sum(seen.values()) >= 10 * len(operations)


def _check_case(case: Any, server: RunningServer) -> None:
    body = case.body if isinstance(case.body, dict) else None
    path = case.operation.path
    if body is not None and ("messages" in body or path == "/v1/completions"):
        body["max_tokens"] = 4  # the LLM writes at most a few tokens per fuzz case
        body.pop("max_completion_tokens", None)
    if body is not None and path == "/v1/responses":
        body["max_output_tokens"] = 4
    if body is not None:
        body.pop("timeout_s", None)  # a deadline the caller sets ends in its 504 by design
    response = case.call(base_url=server.url, timeout=120)
    seen[f"{case.operation.label} {case.meta.generation.mode.value}"] += 1
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    case.validate_response(response, checks=checks)
