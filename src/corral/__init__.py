"""corral: an application-level mixture-of-experts runtime.

Declare many small specialised models in one YAML file, serve them behind one HTTP
endpoint, and send each request to the smallest expert that can do the job.
"""

__version__ = "0.1.0"

from corral.config import Config, Task, default_config, load_config, parse_config
from corral.errors import (
    ConfigError,
    CorralError,
    ExpertFailed,
    ExpertUnavailable,
    InvalidRequest,
    ModelNotFound,
    PayloadTooLarge,
)

__all__ = [
    "Config",
    "ConfigError",
    "CorralError",
    "ExpertFailed",
    "ExpertUnavailable",
    "InvalidRequest",
    "ModelNotFound",
    "PayloadTooLarge",
    "Runtime",
    "Task",
    "__version__",
    "create_app",
    "default_config",
    "load_config",
    "parse_config",
]


def __getattr__(name: str) -> object:
    # Lazy: importing corral must not pull in FastAPI (or torch) for `corral check`.
    if name == "create_app":
        from corral.server import create_app

        return create_app
    if name == "Runtime":
        from corral.runtime import Runtime

        return Runtime
    raise AttributeError(f"module 'corral' has no attribute {name!r}")
