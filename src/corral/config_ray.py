"""The Ray Serve settings of a config: ``runtime.ray`` and each model's ``ray:``.

The embedded engine ignores them, so one YAML serves a laptop and a cluster: the same
models, with how many replicas of each and what each replica reserves written beside
them. Validated as strictly as the rest of the config (unknown keys name their line).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["RayAutoscalingConfig", "RayConfig", "RayModelConfig"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RayAutoscalingConfig(_Strict):
    """Serve autoscaling bounds: replicas added while each has more than
    ``target_ongoing_requests`` in flight, removed when idle, within the bounds."""

    min_replicas: int = Field(1, ge=0, le=1024)
    max_replicas: int = Field(ge=1, le=1024)
    target_ongoing_requests: float = Field(2.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> RayAutoscalingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self


class RayModelConfig(_Strict):
    """One expert's deployment: its replicas (a fixed count or autoscaling bounds),
    what each replica reserves, and how many requests one replica takes at once."""

    replicas: int | None = Field(None, ge=1, le=1024, description="A fixed replica count.")
    autoscaling: RayAutoscalingConfig | None = None
    num_cpus: float | None = Field(
        None, ge=0, description="CPUs each replica reserves (a share, e.g. 0.25, is allowed)."
    )
    num_gpus: float | None = Field(
        None, ge=0, description="GPUs each replica reserves (0.5: two replicas share one)."
    )
    max_ongoing_requests: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="Requests one replica takes at once; default: the expert's batch.max_size, "
        "so a full micro-batch can gather inside the replica.",
    )

    @model_validator(mode="after")
    def _one_scaling(self) -> RayModelConfig:
        if self.replicas is not None and self.autoscaling is not None:
            raise ValueError("give `replicas` or `autoscaling`, not both")
        return self


class RayConfig(_Strict):
    """Where the cluster is, and what every expert's deployment gets by default."""

    address: str | None = Field(
        None,
        description="An existing cluster ('auto', 'ray://head:10001'); unset or empty: "
        "start a local one bound to 127.0.0.1.",
    )
    namespace: str = Field("corral", min_length=1)
    app_name: str = Field("corral", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    num_cpus: int | None = Field(
        None, ge=1, description="CPUs a local cluster offers (default: this machine's)."
    )
    num_gpus: int | None = Field(None, ge=0, description="GPUs a local cluster offers.")
    defaults: RayModelConfig = Field(
        RayModelConfig(),
        description="Settings for every expert without its own (built in: 1 replica, "
        "num_cpus 0.25).",
    )
    ingress: RayModelConfig = Field(
        RayModelConfig(),
        description="The HTTP ingress (FastAPI app and router): 1 replica, num_cpus 0.1.",
    )
