"""The YAML config as pydantic models: load, interpolate ``${ENV}``, validate.

Only ``name``, ``model`` and ``default`` are required of a user; the catalog infers
the rest. Unknown keys are errors that name the key, its line, and the nearest known
key, because a typo that silently does nothing is the worst kind of config bug.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from corral._yaml import Loc, LocatedYaml, interpolate_env
from corral.errors import ConfigError

__all__ = [
    "BatchConfig",
    "Config",
    "LimitsConfig",
    "ModelConfig",
    "RuntimeConfig",
    "ServerConfig",
    "Task",
    "default_config",
    "load_config",
    "parse_config",
]


class Task(StrEnum):
    """What an expert does; each task has its own endpoint and input schema."""

    CHAT = "chat"
    EMBED = "embed"
    RERANK = "rerank"
    CLASSIFY = "classify"
    NER = "ner"
    FORECAST = "forecast"
    DETECT = "detect"
    DOCUMENT = "document"
    ANOMALY = "anomaly"
    GRAPH = "graph"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BatchConfig(_Strict):
    """Dynamic micro-batching: collect up to ``max_size`` items or ``max_wait_ms``.

    ``max_wait_ms: 0`` (the default) still batches: requests that arrive while a forward
    pass runs go into the next one, so a lone request never waits for company.
    """

    max_size: int = Field(32, ge=1, le=4096)
    max_wait_ms: float = Field(0.0, ge=0, le=10_000)


class CostConfig(_Strict):
    per_1k_tokens: float | None = Field(None, ge=0)
    per_gpu_second: float | None = Field(None, ge=0)
    per_cpu_second: float | None = Field(None, ge=0)


class ModelConfig(_Strict):
    """One expert. Everything but ``name`` and ``model`` is optional."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=64)
    model: str = Field(min_length=1)
    default: bool = False
    task: Task | None = None
    backend: str | None = None
    path: Path | None = None
    base_url: str | None = None
    device: str = "auto"
    pin: bool = False
    memory: str | None = None
    batch: BatchConfig = BatchConfig()
    cost: CostConfig | None = None
    labels: list[str] | None = None
    aliases: list[str] = []
    options: dict[str, Any] = {}

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value in ("auto", "cpu", "cuda", "mps") or value.startswith("cuda:"):
            return value
        raise ValueError("device must be auto, cpu, cuda, cuda:N or mps")


class RuntimeConfig(_Strict):
    device: str = "auto"
    memory_budget: str | None = None
    engine: Literal["embedded", "ray"] = "embedded"
    models_dir: Path | None = Field(
        None, description="Extra directory searched for hub ids as <dir>/<org>/<name>."
    )


class LimitsConfig(_Strict):
    """Input limits checked before any model runs (413 when exceeded)."""

    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    max_batch_items: int = Field(256, ge=1)
    max_text_chars: int = Field(32_768, ge=1)
    max_labels: int = Field(64, ge=1)


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_keys: list[str] = []
    limits: LimitsConfig = LimitsConfig()


class RoutingConfig(_Strict):
    coordinator: str | None = Field(None, description="Chat expert for model 'auto'.")
    escalate_to: str | None = Field(None, description="Chat expert offered as `escalate`.")
    max_steps: int = Field(2, ge=1, le=32, description="Tool-calling turns before answering.")
    deadline_s: float = Field(120.0, gt=0)
    fallbacks: dict[str, list[str]] = {}


class ObserveConfig(_Strict):
    metrics: bool = True
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class Config(_Strict):
    models: list[ModelConfig] = Field(min_length=1)
    runtime: RuntimeConfig = RuntimeConfig()
    routing: RoutingConfig = RoutingConfig()
    server: ServerConfig = ServerConfig()
    observe: ObserveConfig = ObserveConfig()

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        seen: set[str] = set()
        for model in self.models:
            for name in (model.name, *model.aliases):
                if name in seen:
                    raise ValueError(f"model name or alias {name!r} is used twice")
                seen.add(name)
        return self

    def model_named(self, name: str) -> ModelConfig | None:
        for model in self.models:
            if name == model.name or name in model.aliases:
                return model
        return None


def parse_config(
    text: str, *, source: str = "<config>", environ: Mapping[str, str] | None = None
) -> Config:
    """Validate YAML text; raise ConfigError with one ``line N: key: problem`` per issue."""
    try:
        located = LocatedYaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError([f"{where}invalid YAML: {exc}"], source=source) from None
    if not isinstance(located.data, dict):
        raise ConfigError(
            ["line 1: the config must be a mapping with a 'models:' list"], source=source
        )
    data, missing = interpolate_env(located.data, environ)
    # (line, text) pairs, so the report can be sorted by line and formatted once
    problems = [
        (
            located.line_of(loc),
            f"{_dotted(loc)}: environment variable ${{{name}}} is not set "
            f"(set it, or write ${{{name}:-default}})",
        )
        for loc, name in missing
    ]
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems += [_describe(error, located) for error in exc.errors()]
    if problems:
        problems.sort(key=lambda problem: problem[0] or 0)
        lines = [f"line {line}: {text}" if line else text for line, text in problems]
        raise ConfigError(lines, source=source)
    return config


def load_config(path: str | Path, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read config: {exc.strerror}"], source=str(file)) from None
    return parse_config(text, source=str(file), environ=environ)


def default_config() -> Config:
    """The built-in config: models shipped in PyPI packages, runs offline on a CPU."""
    text = resources.files("corral").joinpath("default.yaml").read_text(encoding="utf-8")
    return parse_config(text, source="<built-in default>")


def _dotted(loc: Loc) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[")


def _describe(error: Any, located: LocatedYaml) -> tuple[int | None, str]:
    loc: Loc = tuple(p for p in error["loc"] if not str(p).startswith("function-"))
    line = located.line_of(loc)
    if error["type"] == "extra_forbidden":
        key = str(loc[-1])
        hint = _nearest_key(loc[:-1], key)
        suggestion = f" (did you mean {hint!r}?)" if hint else ""
        return line, f"{_dotted(loc)}: unknown key {key!r}{suggestion}"
    return line, f"{_dotted(loc) or 'config'}: {error['msg']}"


def _nearest_key(parent: Loc, key: str) -> str | None:
    model: type[BaseModel] = Config
    for part in parent:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        inner = getattr(annotation, "__args__", (annotation,))
        candidates = [t for t in inner if isinstance(t, type) and issubclass(t, BaseModel)]
        if not candidates:
            return None
        model = candidates[0]
    matches = difflib.get_close_matches(key, list(model.model_fields), n=1, cutoff=0.5)
    return matches[0] if matches else None
