"""The YAML config as pydantic models: load, interpolate ``${ENV}``, validate.

Only ``name``, ``model`` and ``default`` are required of a user; the catalog infers
the rest. Unknown keys are errors that name the key, its line, and the nearest known
key, because a typo that silently does nothing is the worst kind of config bug.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from corral._yaml import Loc, LocatedYaml, interpolate_env
from corral.config_auto import AutoConfig
from corral.config_difficulty import DifficultyConfig
from corral.config_ray import RayConfig, RayModelConfig
from corral.config_server import (
    ApiKeyConfig,
    ConnectionsConfig,
    CorsConfig,
    LimitsConfig,
    RateLimitConfig,
    ServerConfig,
)
from corral.errors import ConfigError

__all__ = [
    "ApiKeyConfig",
    "BatchConfig",
    "CascadeConfig",
    "CascadeStage",
    "CircuitConfig",
    "Config",
    "ConnectionsConfig",
    "CorsConfig",
    "DifficultyConfig",
    "LimitsConfig",
    "ModelConfig",
    "RateLimitConfig",
    "RouteConfig",
    "RoutingConfig",
    "RuntimeConfig",
    "ServerConfig",
    "ShadowConfig",
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
    max_tokens: int | None = Field(
        None,
        ge=1,
        description="Cap on a batch's padded tokens (items x longest, ~4 characters a token).",
    )


# bytes with a unit (6GiB, 512MB, 1e9 plain bytes are not allowed) or a share (50%, 0.5)
SIZE_PATTERN = r"^([0-9]*\.?[0-9]+)\s*(%|[kKmMgGtT]i?[bB]|[bB]|)$"


def _check_size(value: str) -> str:
    if not re.match(SIZE_PATTERN, value.strip()):
        raise ValueError(
            f"{value!r} is not a size: write bytes with a unit (6GiB, 512MB) or a share (50%)"
        )
    return value


class CostConfig(_Strict):
    """One expert's prices; what it leaves out comes from ``observe.prices``."""

    per_1k_tokens: float | None = Field(None, ge=0)
    per_gpu_second: float | None = Field(None, ge=0)
    per_cpu_second: float | None = Field(None, ge=0)


class PriceConfig(_Strict):
    """What compute costs on this machine, for experts without prices of their own
    (defaults: roughly an on-demand 2-vCPU instance and one mid-range cloud GPU)."""

    cpu_hour: float = Field(0.10, ge=0)
    gpu_hour: float = Field(2.00, ge=0)


class ModelConfig(_Strict):
    """One expert. Everything but ``name`` and ``model`` is optional."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=64)
    model: str = Field(min_length=1)
    default: bool = False
    task: Task | None = None
    backend: str | None = None
    path: Path | None = None
    revision: str | None = Field(
        None, description="Hub revision (branch, tag or commit) `corral pull` fetches and loads."
    )
    base_url: str | None = None
    device: str = "auto"
    pin: bool = False
    preload: bool = Field(True, description="false: load on the first request, not at start.")
    role: Literal["code"] | None = Field(
        None, description="code: the coordinator offers it as a code tool (else the catalog's)."
    )
    memory: str | None = Field(None, description="Estimate before the first load, e.g. 2GiB.")
    batch: BatchConfig = BatchConfig()
    cost: CostConfig | None = None
    labels: list[str] | None = None
    aliases: list[str] = []
    prompts: dict[str, str] = Field(
        {},
        description="Sentence-transformers prompts by name (query: 'search_query: '), chosen "
        "per request by prompt_name or Cohere's input_type; over the catalog's and the model's.",
    )
    timeout_s: float | None = Field(None, gt=0, description="Per-request limit; then fallback.")
    threads: int | None = Field(
        None, ge=1, le=256, description="torch threads on this expert's own worker (CPU share)."
    )
    options: dict[str, Any] = {}
    isolate: bool | None = Field(
        None,
        description="Run in a worker process of its own, so a crash in native code fails only "
        "this expert's requests (it restarts); default: true for llama.cpp, false otherwise.",
    )
    ray: RayModelConfig | None = Field(
        None, description="Replicas and resources on Ray Serve (runtime.engine: ray)."
    )

    @field_validator("memory")
    @classmethod
    def _memory_size(cls, value: str | None) -> str | None:
        return None if value is None else _check_size(value)

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value in ("auto", "cpu", "cuda", "mps") or value.startswith("cuda:"):
            return value
        raise ValueError("device must be auto, cpu, cuda, cuda:N or mps")


class RuntimeConfig(_Strict):
    device: str = "auto"
    memory_budget: str | dict[str, str] | None = Field(
        None,
        description="What loaded experts may take per device: 6GiB, 50%, {cpu: 8GiB, cuda: 90%}.",
    )
    admission_timeout_s: float = Field(
        30.0, gt=0, description="How long a request waits for room to load its expert; then 503."
    )
    max_loaded: int | None = Field(
        None,
        ge=1,
        description="Also cap the models loaded at once (experts sharing weights count once).",
    )
    eviction: Literal["cost", "lru"] = Field(
        "cost", description="cost: by reload cost x use per byte (GDSF); lru: least recently used."
    )

    @field_validator("memory_budget")
    @classmethod
    def _sizes(cls, value: str | dict[str, str] | None) -> str | dict[str, str] | None:
        for size in [value] if isinstance(value, str) else (value or {}).values():
            _check_size(size)
        return value

    engine: Literal["embedded", "ray"] = "embedded"
    ray: RayConfig = Field(RayConfig(), description="The Ray cluster (runtime.engine: ray).")
    models_dir: Path | None = Field(
        None, description="Extra directory searched for hub ids as <dir>/<org>/<name>."
    )
    state_dir: Path | None = Field(
        None,
        description="Where fitted detectors and graph models are kept (<dir>/artifacts); "
        "default $CORRAL_STATE_DIR, else ~/.local/state/corral.",
    )
    download: Literal["auto", "never"] = Field(
        "auto",
        description="auto: `corral serve` downloads missing weights when the Hub (or Ollama) "
        "answers; never: serve only what is on disk (as `corral serve --offline`).",
    )


class RouteConfig(_Strict):
    """A semantic route: chat requests (model "auto") that resemble ``examples`` go to
    ``target`` when their best similarity clears ``threshold``."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=64)
    target: str = Field(description="Expert that handles the route (chat, classify or ner).")
    examples: list[str] = Field(min_length=1, max_length=1000)
    threshold: float = Field(0.5, ge=-1.0, le=1.0)
    labels: list[str] | None = Field(None, description="Labels for a classify target.")
    answer: Literal["llm", "direct"] = Field(
        "llm", description="Who words the reply for a non-chat target: an LLM, or the result as is."
    )


class CascadeStage(_Strict):
    expert: str
    threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="Accept when confidence >= this; else the next stage."
    )


class CascadeConfig(_Strict):
    """Smallest expert first; escalate while its confidence is below the stage threshold."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=64)
    task: Literal[Task.CLASSIFY] = Task.CLASSIFY
    stages: list[CascadeStage] = Field(min_length=2, max_length=8)


class ShadowConfig(_Strict):
    """Run ``route`` beside the answering route on a sample of /v1/classify traffic."""

    route: str = Field(description="A classifier, chat expert or cascade to compare.")
    sample: float = Field(0.1, ge=0.0, le=1.0, description="Share of requests mirrored.")
    log: Path = Field(Path("corral-shadow.jsonl"), description="JSONL file it appends to.")


class CircuitConfig(_Strict):
    failures: int = Field(5, ge=1, description="Failures in a row that open the circuit.")
    cooldown_s: float = Field(30.0, gt=0, description="Open this long before one trial request.")


class RoutingConfig(_Strict):
    coordinator: str | None = Field(None, description="Chat expert for model 'auto'.")
    escalate_to: str | None = Field(None, description="Chat expert offered as `escalate`.")
    max_steps: int = Field(2, ge=1, le=32, description="Tool-calling turns before answering.")
    deadline_s: float = Field(120.0, gt=0)
    embedder: str | None = Field(None, description="Embed expert for semantic routes.")
    routes: list[RouteConfig] = []
    route_vote_k: int = Field(5, ge=1, le=100, description="Nearest examples that vote.")
    difficulty: DifficultyConfig | None = None
    shadow: ShadowConfig | None = None
    cascades: list[CascadeConfig] = []
    fallbacks: dict[str, list[str]] = {}
    circuit: CircuitConfig = CircuitConfig()
    auto: AutoConfig = Field(AutoConfig(), description='How model "auto" picks per task.')

    def expert_names(self) -> list[tuple[str, str]]:
        """(where, name) of every expert this section refers to, for checking they exist."""
        named = [("coordinator", self.coordinator), ("escalate_to", self.escalate_to)]
        named.append(("embedder", self.embedder))
        if self.difficulty is not None:
            ladder = self.difficulty.experts
            named += [(f"difficulty.experts[{i}]", name) for i, name in enumerate(ladder or [])]
            named += [("difficulty.small", self.difficulty.small)]
            named += [("difficulty.large", self.difficulty.large)]
        named += [(f"routes.{r.name}.target", r.target) for r in self.routes]
        named += [(f"cascades.{c.name}", s.expert) for c in self.cascades for s in c.stages]
        for source, targets in self.fallbacks.items():
            named += [("fallbacks", source)] + [(f"fallbacks.{source}", t) for t in targets]
        named += self.auto.expert_names()
        return [(where, name) for where, name in named if name is not None]


class ObserveConfig(_Strict):
    metrics: bool = True
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    otlp_endpoint: str | None = Field(
        None, description="Export spans over OTLP/HTTP, e.g. http://127.0.0.1:4318/v1/traces."
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="json: one object per line, with the request's trace id."
    )
    prices: PriceConfig = PriceConfig()
    usage: bool = Field(True, description="Record each request's cost in the usage store.")
    usage_db: Path | None = Field(
        None,
        description="SQLite usage store; default $CORRAL_STATE_DIR/usage.sqlite "
        "(~/.local/state/corral).",
    )


class Config(_Strict):
    models: list[ModelConfig] = Field(min_length=1)
    runtime: RuntimeConfig = RuntimeConfig()
    routing: RoutingConfig = RoutingConfig()
    server: ServerConfig = ServerConfig()
    observe: ObserveConfig = ObserveConfig()

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        seen: set[str] = set()
        for name in [n for m in self.models for n in (m.name, *m.aliases)] + [
            c.name for c in self.routing.cascades
        ]:
            if name in seen:
                raise ValueError(f"model, alias or cascade name {name!r} is used twice")
            seen.add(name)
        return self

    @model_validator(mode="after")
    def _routing_names_exist(self) -> Config:
        named = [(f"routing.{where}", name) for where, name in self.routing.expert_names()]
        for i, key in enumerate(self.server.api_keys):
            if isinstance(key, ApiKeyConfig):
                named += [(f"server.api_keys[{i}].experts", name) for name in key.experts or []]
        unknown = [
            f"{where}: no model named {name!r}"
            for where, name in named
            if self.model_named(name) is None
        ]
        if unknown:
            known = ", ".join(m.name for m in self.models)
            raise ValueError("; ".join(unknown) + f" (models: {known})")
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
    else:
        from corral.experts.options import option_problems  # the backends' option models

        problems += [(located.line_of(loc), text) for loc, text in option_problems(config)]
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
