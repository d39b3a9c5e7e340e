"""``runtime.engine: ray``: the same config as a Ray Serve application.

One deployment per expert (``expert-<name>``; each replica a corral Runtime holding
that expert, with its micro-batcher), and corral's FastAPI app and Router as the
ingress deployment. Replicas and resources come from each model's ``ray:`` settings,
then ``runtime.ray.defaults``. ``runtime.ray.address`` names a cluster to join; without
it a local one is started, bound to 127.0.0.1. Ray is imported only here and below
(``pip install 'corral[ray]'``); the embedded engine never needs it.

Not built yet: many small variants of one expert (fine-tunes) sharing replicas. How it
would go, one YAML for both engines as everywhere else:

1. Config: ``variants: {dir: PATH}`` on a model (each subdirectory one variant in the
   base's layout; task and backend resolved once, from the base); a request names
   ``"<expert>:<variant>"`` as its ``model``. ``Runtime`` makes an ``ExpertHandle`` per
   variant on first use, so on the embedded engine the residency manager already loads
   and evicts variants by memory x reload cost x recency: nothing new there.
2. Ray: still one deployment per base expert. ``ExpertReplica`` gains an
   ``@serve.multiplexed`` loader whose body is the replica Runtime's ``ensure_loaded``
   for the variant's handle; ``RemoteRuntime._call`` sends
   ``handle.options(multiplexed_model_id=variant)``, so Serve routes a variant to a
   replica that holds it (else the least busy one, which loads it).
3. Serve's multiplexer evicts by count (LRU, ``max_num_models_per_replica``); corral
   evicts by bytes. The replica Runtime gets the replica's ``memory`` reservation as its
   ``memory_budget`` and the count is set above what fits, so corral's ``Placement``
   evicts first; the loader returns a small object whose ``__del__`` (Serve's unload
   hook) unloads that handle, so Serve never believes in a variant corral dropped.
4. Metrics keep ``expert`` the base name (variants are unbounded label values) and the
   report carries each variant load. Test: two random-init fine-tunes of one tiny
   encoder (different weights, so different vectors) served alternately on both
   engines; on Ray with 2 replicas x 1 variant, each variant stays on one replica
   (no reloads in the replicas' reports).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from corral.config import Config, ModelConfig
from corral.config_ray import RayConfig, RayModelConfig
from corral.experts.base import require

if TYPE_CHECKING:
    from ray.serve import Application

    from corral.routing import FittedRouting

__all__ = [
    "EXPERT_CPUS",
    "INGRESS_CPUS",
    "build_application",
    "connect",
    "deployment_options",
    "expert_deployment_name",
    "run",
    "serving",
]

log = logging.getLogger("corral.engines.ray")

# a share of a core, so the default config's five experts and the ingress fit a laptop;
# give `num_cpus: 1` or more to reserve whole cores (Ray then sets OMP_NUM_THREADS)
EXPERT_CPUS = 0.25
INGRESS_CPUS = 0.1
_INGRESS_ONGOING = 1000  # the ingress waits on experts; it takes every request at once


def expert_deployment_name(name: str) -> str:
    return f"expert-{name}"


def deployment_options(
    own: RayModelConfig | None, defaults: RayModelConfig, *, cpus: float, batch: int
) -> dict[str, Any]:
    """Serve ``.options(...)`` for one deployment: its own settings over the defaults."""
    own = own or RayModelConfig()

    def pick(field: str) -> Any:
        value = getattr(own, field)
        return value if value is not None else getattr(defaults, field)

    actor: dict[str, Any] = {"num_cpus": pick("num_cpus") if pick("num_cpus") is not None else cpus}
    if pick("num_gpus"):
        actor["num_gpus"] = pick("num_gpus")
    options: dict[str, Any] = {
        "ray_actor_options": actor,
        "max_ongoing_requests": pick("max_ongoing_requests") or batch,
    }
    # the model's own scaling (either kind) replaces the defaults' (either kind)
    scaling = own if own.replicas is not None or own.autoscaling is not None else defaults
    if scaling.autoscaling is not None:
        bounds = scaling.autoscaling
        options["autoscaling_config"] = {
            "min_replicas": bounds.min_replicas,
            "initial_replicas": max(1, bounds.min_replicas),
            "max_replicas": bounds.max_replicas,
            "target_ongoing_requests": bounds.target_ongoing_requests,
        }
    else:
        options["num_replicas"] = scaling.replicas or 1
    return options


def build_application(config: Config, *, fitted: FittedRouting | None = None) -> Application:
    """The Serve application of ``config``: every expert's deployment, then the ingress."""
    serve = require("ray.serve", "ray")
    from corral.engines.ray_ingress import Ingress
    from corral.engines.ray_replica import ExpertReplica

    settings = config.runtime.ray
    replica = serve.deployment(ExpertReplica)
    experts = {
        spec.name: replica.options(
            name=expert_deployment_name(spec.name), **_expert_options(spec, settings)
        ).bind(config, spec.name)
        for spec in config.models
    }
    ingress = serve.deployment(Ingress).options(
        name="ingress",
        **deployment_options(
            settings.ingress, RayModelConfig(), cpus=INGRESS_CPUS, batch=_INGRESS_ONGOING
        ),
    )
    return ingress.bind(config, experts, fitted)  # type: ignore[no-any-return]


def _expert_options(spec: ModelConfig, settings: RayConfig) -> dict[str, Any]:
    return deployment_options(
        spec.ray, settings.defaults, cpus=EXPERT_CPUS, batch=max(spec.batch.max_size, 4)
    )


def connect(settings: RayConfig) -> bool:
    """Join ``settings.address``, or start a local cluster on 127.0.0.1; True when this
    call started Ray (so the caller shuts it down). Reuses Ray if already initialised."""
    ray = require("ray", "ray")
    if ray.is_initialized():
        return False
    if settings.address:  # "" (an unset ${RAY_ADDRESS:-}) also means: start one here
        ray.init(address=settings.address, namespace=settings.namespace)
        return True
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # a local cluster phones no one
    ray.init(
        address="local",
        num_cpus=settings.num_cpus,
        num_gpus=settings.num_gpus,
        include_dashboard=False,
        namespace=settings.namespace,
        _node_ip_address="127.0.0.1",
    )
    return True


@contextlib.contextmanager
def serving(
    config: Config, *, host: str, port: int, fitted: FittedRouting | None = None
) -> Iterator[str]:
    """Deploy ``config`` on Ray Serve with HTTP on ``host:port``; yields the URL and
    deletes the application afterwards (and stops Ray if it started it)."""
    ray = require("ray", "ray")
    serve = require("ray.serve", "ray")
    started = connect(config.runtime.ray)
    name = config.runtime.ray.app_name
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(build_application(config, fitted=fitted), name=name, route_prefix="/")
        yield f"http://{host}:{port}"
    finally:
        with contextlib.suppress(Exception):  # shutting down: report nothing more
            serve.delete(name)
        if started:
            serve.shutdown()
            ray.shutdown()


def run(config: Config, *, host: str, port: int, fitted: FittedRouting | None = None) -> None:
    """``corral serve --engine ray``: deploy, then serve until interrupted."""
    import time

    with serving(config, host=host, port=port, fitted=fitted) as url:
        log.warning("corral on Ray Serve at %s (Ctrl-C stops)", url)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
