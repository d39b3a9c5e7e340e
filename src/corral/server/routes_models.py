"""OpenAI-compatible endpoints: ``/v1/embeddings`` and ``/v1/models``."""

from __future__ import annotations

import time

from fastapi import APIRouter

from corral.access import current_grant, require_expert
from corral.config import CascadeConfig, Task
from corral.errors import ModelNotFound
from corral.runtime import ExpertHandle
from corral.server.deps import RuntimeDep
from corral.server.schemas import (
    ERROR_RESPONSES,
    ModelCard,
    ModelList,
)
from corral.tasks.chat.api import AUTO

api = APIRouter(prefix="/v1", tags=["openai"], responses=ERROR_RESPONSES)
_STARTED = int(time.time())


@api.get("/models", response_model=ModelList)
async def list_models(runtime: RuntimeDep) -> ModelList:
    """Every expert, then every cascade (usable as ``model`` on its task's endpoint); with
    a key limited to some experts, those only."""
    grant = current_grant()
    allowed = grant.allows if grant is not None else lambda _: True
    experts = [_card(h) for h in runtime.handles.values() if allowed(h.name)]
    cascades = [
        _cascade_card(c)
        for c in runtime.config.routing.cascades
        if all(allowed(stage.expert) for stage in c.stages)
    ]
    chat = any(h.task == Task.CHAT and allowed(h.name) for h in runtime.handles.values())
    auto = [_auto_card()] if chat else []  # the router answers with a chat expert
    return ModelList(data=experts + cascades + auto)


@api.get("/models/{name}", response_model=ModelCard)
async def get_model(name: str, runtime: RuntimeDep) -> ModelCard:
    if name == AUTO:
        return _auto_card()
    spec = runtime.config.model_named(name)
    if spec is None:
        grant = current_grant()
        usable = [n for n in runtime.handles if grant is None or grant.allows(n)]
        raise ModelNotFound(f"no model {name!r}; available: {', '.join(usable)}", param="model")
    require_expert(spec.name)
    return _card(runtime.handles[spec.name])


def _auto_card() -> ModelCard:
    """``model: "auto"``: the router picks (semantic routes, then the coordinator LLM)."""
    return ModelCard(
        id=AUTO,
        created=_STARTED,
        model="corral router: semantic routes, then the coordinator LLM with experts as tools",
        task=Task.CHAT.value,
        backend="router",
        state="ready",
        default=False,
        aliases=[],
    )


def _cascade_card(cascade: CascadeConfig) -> ModelCard:
    return ModelCard(
        id=cascade.name,
        created=_STARTED,
        model=" -> ".join(stage.expert for stage in cascade.stages),
        task=cascade.task.value,
        backend="cascade",
        state="ready",
        default=False,
        aliases=[],
        stages=[stage.expert for stage in cascade.stages],
    )


def _card(handle: ExpertHandle) -> ModelCard:
    state, reason = handle.status()  # an unreachable upstream shows as unavailable
    return ModelCard(
        id=handle.name,
        created=_STARTED,
        model=handle.spec.model,
        task=handle.task.value if handle.task else None,
        backend=handle.resolved.backend,
        runtime=handle.expert.runtime_in_use if handle.expert is not None else None,
        state=state,
        default=handle.spec.default,
        aliases=list(handle.spec.aliases),
        memory_bytes=handle.memory_bytes,
        reason=reason or None,
    )
