"""What the routes of fitted models share (anomaly detectors, graph models, document
heads): the ``?owner=`` parameter, and ``FittedRoutes``, which mounts a kind's list,
describe and delete routes (``GET .../``, ``GET .../{name}``, ``DELETE .../{name}``)
from its response models, so every kind answers them alike.

The models themselves live in the artifact store (``artifacts.py``); names are qualified
per API key (``ownership.py``), so a key lists, uses and deletes only its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel

from corral.access import current_grant
from corral.artifacts import NAME_PATTERN, ArtifactInfo, ArtifactStore
from corral.ownership import OWNER_PATTERN, canonical, qualify
from corral.server.deps import RuntimeDep

__all__ = ["FittedName", "FittedRoutes", "Owner", "visible_versions"]

Owner = Annotated[
    str | None,
    Query(
        pattern=OWNER_PATTERN,
        description="Another key's model (shared or admin keys only); '_': one fitted "
        "before keys were configured. Omitted: the key's own.",
    ),
]
FittedName = Annotated[
    str, Path(pattern=NAME_PATTERN, description="Letters, digits, '.', '_', '-'; 64 at most.")
]
Version = Annotated[int | None, Query(ge=1, description="Only this version.")]


async def visible_versions(store: ArtifactStore, kind: str) -> list[list[ArtifactInfo]]:
    """Every stored model of ``kind`` the asking key may see, each as its versions, oldest
    first (every key's for shared and admin keys; everything without keys)."""
    grant = current_grant()
    by_ref: dict[str, list[ArtifactInfo]] = {}
    for info in await asyncio.to_thread(store.list, kind):  # by owner, name, then version
        if grant is None or grant.may_see(info.owner):
            by_ref.setdefault(info.ref, []).append(info)
    return list(by_ref.values())


@dataclass(frozen=True)
class FittedRoutes:
    """The list, describe and delete routes of one kind of fitted model."""

    kind: str  # the artifact store's folder ("anomaly", "graph", "documents")
    what: str  # the models' name in messages ("detectors")
    info: type[BaseModel]  # one model's answer, built by ``describe``
    describe: Callable[[list[ArtifactInfo]], BaseModel]  # its versions, oldest first
    listing: type[BaseModel]  # {"data": [info, ...]}
    deleted: type[BaseModel]  # {"name": ..., "deleted": versions gone}
    # what else goes with a deleted model (an anomaly detector's stream windows), given
    # the request and the model's canonical name
    on_delete: Callable[[Request, str], None] | None = None

    def mount(self, api: APIRouter, path: str = "") -> None:
        """Add the three routes at ``path`` under ``api``'s prefix."""
        what = self.what
        api.add_api_route(
            path,
            self.list_models,
            methods=["GET"],
            response_model=self.listing,
            summary=f"List {what}",
            description=f"Every stored one of the {what} with its versions; the fields are "
            "the newest version's. With keys: the key's own (every key's for shared and "
            "admin keys, each with its owner).",
        )
        api.add_api_route(
            f"{path}/{{name}}",
            self.describe_model,
            methods=["GET"],
            response_model=self.info,
            summary=f"Describe one of the {what}",
        )
        api.add_api_route(
            f"{path}/{{name}}",
            self.delete_model,
            methods=["DELETE"],
            response_model=self.deleted,
            summary=f"Delete one of the {what}",
            description="One version (``?version=``), or every version.",
        )

    async def list_models(self, runtime: RuntimeDep) -> Any:
        stored = await visible_versions(runtime.artifacts, self.kind)
        return self.listing(data=[self.describe(versions) for versions in stored])

    async def describe_model(
        self, name: FittedName, runtime: RuntimeDep, owner: Owner = None
    ) -> Any:
        ref = canonical(qualify(name, owner, what=self.what))
        stored = await asyncio.to_thread(runtime.artifacts.list, self.kind)
        versions = [info for info in stored if info.ref == ref]
        if not versions:
            runtime.artifacts.info(self.kind, ref)  # raises the 404 that names it
        return self.describe(versions)

    async def delete_model(
        self,
        name: FittedName,
        runtime: RuntimeDep,
        request: Request,
        version: Version = None,
        owner: Owner = None,
    ) -> Any:
        ref = qualify(name, owner, what=self.what)
        deleted = await asyncio.to_thread(runtime.artifacts.delete, self.kind, ref, version)
        if self.on_delete is not None:
            self.on_delete(request, canonical(ref))
        return self.deleted(name=name, deleted=deleted)
