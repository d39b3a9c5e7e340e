"""What the routes of fitted models share (anomaly detectors, graph models, document
heads): the ``?owner=`` parameter, listing the asking key's models with their versions,
and deleting a version or all of them.

The models themselves live in the artifact store (``artifacts.py``); names are qualified
per API key (``ownership.py``), so a key lists, uses and deletes only its own.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Query

from corral.access import current_grant
from corral.artifacts import ArtifactInfo, ArtifactStore
from corral.ownership import OWNER_PATTERN

__all__ = ["Owner", "delete_versions", "visible_versions"]

Owner = Annotated[
    str | None,
    Query(
        pattern=OWNER_PATTERN,
        description="Another key's model (shared or admin keys only); '_': one fitted "
        "before keys were configured. Omitted: the key's own.",
    ),
]


async def visible_versions(store: ArtifactStore, kind: str) -> list[list[ArtifactInfo]]:
    """Every stored model of ``kind`` the asking key may see, each as its versions, oldest
    first (every key's for shared and admin keys; everything without keys)."""
    grant = current_grant()
    by_ref: dict[str, list[ArtifactInfo]] = {}
    for info in await asyncio.to_thread(store.list, kind):  # by owner, name, then version
        if grant is None or grant.may_see(info.owner):
            by_ref.setdefault(info.ref, []).append(info)
    return list(by_ref.values())


async def delete_versions(store: ArtifactStore, kind: str, ref: str, version: int | None) -> int:
    """Delete one version of a qualified ``ref``, or all of them; how many went (404 when
    there was none)."""
    return await asyncio.to_thread(store.delete, kind, ref, version)
