"""corral's exception hierarchy.

Every error that can reach a client is one of these; the server maps them to HTTP
status codes in one place (``server/errors.py``) using ``status_code``::

    CorralError
    ├── ConfigError              invalid YAML / schema; never reaches HTTP
    ├── RequestError             the caller must change the request (4xx)
    │   ├── InvalidRequest       422  a field is wrong in a way pydantic cannot see
    │   ├── Forbidden            403  the API key may not use that expert
    │   ├── NotFound             404  no such stored thing (a fitted detector, a version)
    │   │   └── ModelNotFound    404  no such expert for that task
    │   ├── PayloadTooLarge      413  a configured input limit was exceeded
    │   └── RateLimited          429  the key's request or token rate is spent
    └── ExpertError              the server side could not answer (5xx)
        ├── ExpertUnavailable    503  weights missing, backend not installed, load failed
        │   ├── NoCapacity       503  no room in the memory budget now (not a failure)
        │   └── WorkerCrashed    503  an isolated expert's process died; it is restarting
        ├── ExpertFailed         500  the expert raised while serving; message is generic
        ├── ExpertTimeout        504  past the expert's timeout_s or the request's deadline
        └── CoordinatorTimeout   504  the coordinator's tool loop ran past its deadline_s
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "CoordinatorTimeout",
    "CorralError",
    "ExpertError",
    "ExpertFailed",
    "ExpertTimeout",
    "ExpertUnavailable",
    "Forbidden",
    "InvalidRequest",
    "ModelNotFound",
    "NoCapacity",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "RequestError",
    "WorkerCrashed",
]


class CorralError(Exception):
    """Base of all corral errors; ``code`` is a stable machine-readable string."""

    status_code = 500
    code = "internal_error"
    retry_after: float | None = None  # seconds, for a Retry-After header (503, 429)

    def __init__(
        self, message: str, *, param: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if retry_after is not None:
            self.retry_after = retry_after


class ConfigError(CorralError):
    """The configuration is invalid; ``problems`` holds one line per problem."""

    code = "invalid_config"

    def __init__(self, problems: list[str], *, source: str = "<config>") -> None:
        self.problems = problems
        self.source = source
        super().__init__(f"{source}: " + "; ".join(problems))


class RequestError(CorralError):
    status_code = 400
    code = "invalid_request"


class InvalidRequest(RequestError):
    status_code = 422
    code = "invalid_request"


class NotFound(RequestError):
    status_code = 404
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class PayloadTooLarge(RequestError):
    status_code = 413
    code = "payload_too_large"


class Forbidden(RequestError):
    status_code = 403
    code = "forbidden"


class RateLimited(RequestError):
    status_code = 429
    code = "rate_limited"


class ExpertError(CorralError):
    status_code = 500
    code = "expert_error"


class ExpertUnavailable(ExpertError):
    status_code = 503
    code = "expert_unavailable"
    retry_after: float | None = 30.0


class NoCapacity(ExpertUnavailable):
    """The expert is fine but the memory budget has no room for it now: the request
    may go to a fallback, but the expert's circuit breaker does not count it."""

    code = "no_capacity"


class WorkerCrashed(ExpertUnavailable):
    """An isolated expert's worker process died (a signal in native code) while this
    request was running, or is being restarted: only that expert's callers see it."""

    code = "worker_crashed"


class ExpertFailed(ExpertError):
    status_code = 500
    code = "expert_failed"


class ExpertTimeout(ExpertError):
    """An expert took longer than its ``timeout_s`` (or the request's own deadline)."""

    status_code = 504
    code = "expert_timeout"
    queued = False  # the time ran out before the work started: others' work, not this expert's


class CoordinatorTimeout(ExpertError):
    """The coordinator's tool-calling loop ran past ``routing.deadline_s``."""

    status_code = 504
    code = "coordinator_timeout"
