"""The experts of one config and what every way of running them shares: their handles and
lookup by task and name, the uploads and fitted-model stores, metrics, and the cost meter
each call's compute and tokens are charged to.

The embedded runtime (``runtime.py``) and the Ray ingress's (``engines/ray_runtime.py``)
are both a ``Roster`` plus how they run a call; neither inherits the other's machinery.
The stores are passed in when the caller already has them, so one upload store serves
whichever runtime reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from corral.access import current_grant, require_expert
from corral.artifacts import ArtifactStore, default_state_dir
from corral.catalog import missing_task_hint, resolve
from corral.config import Config, Task
from corral.errors import ExpertUnavailable, ModelNotFound
from corral.experts.registry import expert_class
from corral.observe.cost import CostMeter
from corral.observe.metrics import Metrics
from corral.observe.trace import active_trace
from corral.runtime.handle import ExpertHandle, ExpertState
from corral.uploads.files import FileStore

__all__ = ["Roster"]


class Roster:
    """Holds the experts of one config; create one per server (no globals)."""

    def __init__(
        self,
        config: Config,
        *,
        environ: Mapping[str, str] | None = None,
        metrics: Metrics | None = None,
        files: FileStore | None = None,
        artifacts: ArtifactStore | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.costs: CostMeter | None = None  # told every call's compute seconds and tokens
        if artifacts is None:
            state_dir = config.runtime.state_dir or default_state_dir(environ)
            artifacts = ArtifactStore(state_dir.expanduser() / "artifacts")
        self.artifacts = artifacts
        # uploads, by id (/v1/files)
        self.files = files if files is not None else FileStore.from_limits(config.server.limits)
        self.handles: dict[str, ExpertHandle] = {}
        for spec in config.models:
            handle = ExpertHandle(spec, resolve(spec, config.runtime, environ))
            _mark_unavailable_early(handle)
            self.handles[spec.name] = handle
        self.warmed = False  # load_all has run: experts left unloaded stay so by the budget

    def find(self, task: Task, name: str | None) -> ExpertHandle:
        """The expert called ``name`` (or alias) for ``task``; the task's default if None."""
        candidates = [h for h in self.handles.values() if h.task == task]
        if name == "auto" and self.config.model_named(name) is None:
            name = None  # the router's choice; where it has none, the default
        if name is None:
            if not candidates:
                raise ModelNotFound(
                    f"no {task.value} expert is configured{missing_task_hint(task)}",
                    param="model",
                )
            return next((h for h in candidates if h.spec.default), candidates[0])
        spec = self.config.model_named(name)
        if spec is not None:
            require_expert(spec.name)  # a forbidden expert is a 403, whatever its task
        if spec is None or self.handles[spec.name].task != task:
            grant = current_grant()  # the list shows only what the key may use
            usable = [h for h in candidates if grant is None or grant.allows(h.name)]
            names = ", ".join(h.name for h in usable) or "none configured"
            raise ModelNotFound(
                f"no {task.value} expert named {name!r}; available: {names}", param="model"
            )
        return self.handles[spec.name]

    @property
    def ready(self) -> bool:
        """Pre-warm is done (or every expert that can load has loaded)."""
        return self.warmed or all(
            h.state in (ExpertState.READY, ExpertState.UNAVAILABLE) for h in self.handles.values()
        )

    # --- accounting ----------------------------------------------------------------------
    def keep_prompt(self, prompt: str | None) -> None:
        """The prompt a backend rendered, into the request's trace when logging at debug."""
        trace = active_trace()
        if prompt is not None and trace is not None and self.config.observe.log_level == "debug":
            trace.prompts.append(prompt)

    def account_usage(
        self, handle: ExpertHandle, seconds: float, usage: dict[str, Any] | None
    ) -> None:
        usage = usage or {}
        read, written = (
            int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0),
        )
        self.account(handle, seconds, read, written)

    def account(self, handle: ExpertHandle, seconds: float, read: int, written: int) -> None:
        """Tokens into the metrics, compute seconds and tokens to the cost meter."""
        if self.metrics is not None:
            self.metrics.count_tokens(handle.name, read, written)
        if self.costs is not None:
            self.costs.charge(handle.name, handle.device or "cpu", seconds, read, written)


def _mark_unavailable_early(handle: ExpertHandle) -> None:
    """Experts that cannot load are known before any request: say why, once."""
    r = handle.resolved
    if r.task is None:
        handle.reason = f"expert {r.name!r}: cannot tell the task of {r.model!r}; set `task:`"
    elif r.backend is None:
        handle.reason = f"expert {r.name!r}: no {r.task.value} backend known; set `backend:`"
    elif not r.found:
        handle.reason = (
            f"expert {r.name!r}: weights for {r.model!r} not found (looked in: "
            f"{'; '.join(r.looked)}); supply them: {r.hint}"
        )
    else:
        try:
            expert_class(r.task, r.backend)
            return
        except ExpertUnavailable as exc:
            handle.reason = f"expert {r.name!r}: {exc.message}"
    handle.state = ExpertState.UNAVAILABLE
