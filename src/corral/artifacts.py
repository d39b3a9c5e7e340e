"""Fitted state that outlives the process: anomaly detectors and graph models fitted
over HTTP, stored as numbered versions on disk.

Why this shape:

* **No pickle.** Arrays go into ``.npz`` files read with ``allow_pickle=False``; the rest
  is a JSON manifest. A model that a library would only pickle (an sklearn forest) is
  stored as what it was fitted on plus its parameters and seed, and refitted on load.
* **Atomic.** Each file is written with ``write_atomic``; the manifest is written last
  and is what makes a version exist, so a crash mid-save leaves no half version.
* **Versioned.** Every save under a name makes version ``n + 1``; loading without a
  version takes the newest; deleting drops one version or all of them.

Layout: ``<root>/<kind>/<name>/v<n>.npz`` and ``v<n>.json``; what an API key owns (see
``corral.ownership``) under ``<root>/<kind>/@<owner>/<name>/``. Every method takes a
name as ``name`` or ``owner/name``.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from corral._atomic import write_atomic
from corral.errors import InvalidRequest, NotFound
from corral.ownership import UNOWNED, split

__all__ = ["Artifact", "ArtifactInfo", "ArtifactStore", "default_state_dir"]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)
_VERSION_FILE = re.compile(r"^v(\d+)\.json$")


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$CORRAL_STATE_DIR``, else ``$XDG_STATE_HOME/corral``, else ~/.local/state/corral."""
    env = os.environ if environ is None else environ
    if env.get("CORRAL_STATE_DIR"):
        return Path(env["CORRAL_STATE_DIR"])
    base = Path(env.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "corral"


@dataclass(frozen=True)
class ArtifactInfo:
    """What a listing shows of one stored version."""

    kind: str
    name: str
    version: int
    created: float  # unix seconds
    meta: dict[str, Any]
    owner: str | None = None  # the API key that made it; None: made without keys

    @property
    def ref(self) -> str:
        """The qualified name that finds this again, whoever asks (``_/`` when unowned)."""
        return f"{self.owner or UNOWNED}/{self.name}"


@dataclass(frozen=True)
class Artifact:
    info: ArtifactInfo
    arrays: dict[str, np.ndarray]


class ArtifactStore:
    """Numbered versions of named fitted models, one directory per kind."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()  # version numbers are taken one save at a time

    def save(
        self, kind: str, name: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]
    ) -> ArtifactInfo:
        """Store a new version of ``name``; returns what was stored."""
        folder = self._folder(kind, name)
        owner, name = split(name)
        buffer = io.BytesIO()
        np.savez(buffer, allow_pickle=False, **{k: np.asarray(v) for k, v in arrays.items()})
        with self._lock:
            folder.mkdir(parents=True, exist_ok=True)
            version = max(self._versions(folder), default=0) + 1
            info = ArtifactInfo(kind, name, version, time.time(), dict(meta), owner)
            write_atomic(folder / f"v{version}.npz", buffer.getvalue())
            manifest = {"version": version, "created": info.created, "meta": info.meta}
            write_atomic(folder / f"v{version}.json", json.dumps(manifest).encode())
        return info

    def load(self, kind: str, name: str, version: int | None = None) -> Artifact:
        """The given version of ``name``, else its newest; NotFound (404) when absent."""
        info = self.info(kind, name, version)
        path = self._folder(kind, name) / f"v{info.version}.npz"
        with np.load(path, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
        return Artifact(info, arrays)

    def info(self, kind: str, name: str, version: int | None = None) -> ArtifactInfo:
        folder = self._folder(kind, name)
        versions = self._versions(folder)
        owner, bare = split(name)
        if not versions or (version is not None and version not in versions):
            which = f"version {version} of " if version is not None and versions else ""
            raise NotFound(f"no {kind} named {bare!r} ({which}nothing stored); fit it first")
        return self._read_info(kind, bare, folder, version or max(versions), owner)

    def list(self, kind: str) -> builtins.list[ArtifactInfo]:
        """Every stored version of every name of ``kind``, whoever owns it: the unowned
        first, then by owner, name and version."""
        base = self.root / kind
        if not base.is_dir():
            return []
        owners = [(None, base)] + [
            (folder.name[1:], folder)
            for folder in sorted(base.iterdir())
            if folder.name.startswith("@") and _NAME.match(folder.name[1:])
        ]
        return [
            self._read_info(kind, folder.name, folder, version, owner)
            for owner, parent in owners
            for folder in sorted(parent.iterdir())
            if folder.is_dir() and _NAME.match(folder.name)
            for version in sorted(self._versions(folder))
        ]

    def delete(self, kind: str, name: str, version: int | None = None) -> int:
        """Drop one version, or all of them; returns how many went. NotFound if none."""
        folder = self._folder(kind, name)
        versions = self._versions(folder)
        doomed = versions if version is None else [v for v in versions if v == version]
        if not doomed:
            self.info(kind, name, version)  # raises the NotFound that says what is missing
        with self._lock:
            for v in doomed:  # manifest first: the version stops existing at once
                (folder / f"v{v}.json").unlink(missing_ok=True)
                (folder / f"v{v}.npz").unlink(missing_ok=True)
            if not self._versions(folder):
                shutil.rmtree(folder, ignore_errors=True)
        return len(doomed)

    def _folder(self, kind: str, name: str) -> Path:
        owner, bare = split(name)
        for part in (bare, owner or ""):
            if (part and not _NAME.match(part)) or not bare:
                raise InvalidRequest(
                    f"name {part or name!r} is not allowed: letters, digits, '.', '_' and '-', "
                    "starting with a letter or digit, at most 64 characters",
                    param="name",
                )
        return self.root / kind / (f"@{owner}" if owner else "") / bare

    @staticmethod
    def _versions(folder: Path) -> builtins.list[int]:
        if not folder.is_dir():
            return []
        return [int(m.group(1)) for p in folder.iterdir() if (m := _VERSION_FILE.match(p.name))]

    @staticmethod
    def _read_info(
        kind: str, name: str, folder: Path, version: int, owner: str | None
    ) -> ArtifactInfo:
        manifest = json.loads((folder / f"v{version}.json").read_text(encoding="utf-8"))
        created = float(manifest["created"])
        return ArtifactInfo(kind, name, version, created, manifest["meta"], owner)
