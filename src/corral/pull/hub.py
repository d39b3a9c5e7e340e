"""Hugging Face downloads through ``huggingface_hub`` itself, into the standard cache.

The repo's file list and sizes come from the Hub's model-info API (``files_metadata``);
``select_files`` keeps what the backend loads; the bytes still missing are checked
against free disk space before the first byte is fetched; then each file goes through
``hf_hub_download``, which writes to a temporary file and renames it into the cache,
resumes a dropped connection with a range request, and honours ``HF_TOKEN`` and
``HF_ENDPOINT``. ``HF_HUB_OFFLINE=1`` means no request at all.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral._atomic import write_atomic
from corral.pull.errors import DownloadError
from corral.pull.files import select_files
from corral.pull.progress import PullProgress, human_bytes

__all__ = [
    "HubPlan",
    "HubSettings",
    "HubSource",
    "check_disk",
    "fetch_from_hub",
    "hub_reachable",
    "plan_hub",
]

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_DEFAULT_ENDPOINT = "https://huggingface.co"


@dataclass(frozen=True)
class HubSettings:
    """Where the Hub is and how to talk to it, read from the environment once."""

    endpoint: str
    cache_dir: Path
    token: str | None
    offline: bool

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> HubSettings:
        from corral.catalog import hf_cache_dir

        # as huggingface_hub reads it: HF_HUB_OFFLINE, else TRANSFORMERS_OFFLINE
        flag = env.get("HF_HUB_OFFLINE") or env.get("TRANSFORMERS_OFFLINE") or ""
        offline = flag.strip().upper() in ("1", "ON", "YES", "TRUE")
        return cls(
            endpoint=env.get("HF_ENDPOINT", _DEFAULT_ENDPOINT).rstrip("/"),
            cache_dir=hf_cache_dir(env),
            token=env.get("HF_TOKEN") or None,
            offline=offline,
        )


@dataclass(frozen=True)
class HubSource:
    """One expert's files on the Hub: the repo the backend can load, at a revision."""

    expert: str
    repo: str
    backend: str
    revision: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class HubPlan:
    source: HubSource
    commit: str
    sizes: dict[str, int]  # every file the backend needs -> bytes
    missing: list[str]  # those not yet in the cache
    note: str = ""

    @property
    def missing_bytes(self) -> int:
        return sum(self.sizes[name] for name in self.missing)

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes.values())

    def snapshot(self, settings: HubSettings) -> Path:
        return _repo_dir(settings, self.source.repo) / "snapshots" / self.commit


def plan_hub(source: HubSource, settings: HubSettings, *, timeout: float = 10.0) -> HubPlan:
    """Ask the Hub which files the backend needs and which the cache lacks."""
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise DownloadError(
            f"expert {source.expert!r}: downloading from the Hub needs huggingface_hub: "
            "pip install 'corral[text]'"
        ) from None
    if settings.offline:
        raise DownloadError(f"expert {source.expert!r}: HF_HUB_OFFLINE is set; not asking the Hub")
    api = HfApi(endpoint=settings.endpoint, token=settings.token)
    url = f"{settings.endpoint}/api/models/{source.repo}/revision/{source.revision or 'main'}"
    try:
        info = api.model_info(
            source.repo, revision=source.revision or "main", files_metadata=True, timeout=timeout
        )
    except Exception as exc:
        raise _download_error(source.expert, source.repo, "(file list)", url, exc) from None
    if info.sha is None or not info.siblings:
        raise DownloadError(f"expert {source.expert!r}: {url} listed no files for {source.repo}")
    sizes = {s.rfilename: int(s.lfs.size if s.lfs else s.size or 0) for s in info.siblings}
    try:
        choice = select_files(source.backend, list(sizes), source.options)
    except Exception as exc:
        message = getattr(exc, "message", str(exc))
        raise DownloadError(f"expert {source.expert!r}: {source.repo}: {message}") from None
    wanted = {name: sizes[name] for name in choice.files}
    snapshot = _repo_dir(settings, source.repo) / "snapshots" / info.sha
    missing = [name for name in choice.files if not (snapshot / name).exists()]
    return HubPlan(source, info.sha, wanted, missing, choice.note)


def fetch_from_hub(plan: HubPlan, settings: HubSettings, progress: PullProgress) -> Path:
    """Download what ``plan`` found missing; returns the snapshot directory."""
    from huggingface_hub import hf_hub_download

    source = plan.source
    check_disk(source.expert, plan.missing_bytes, settings.cache_dir)
    for name in plan.missing:
        url = f"{settings.endpoint}/{source.repo}/resolve/{plan.commit}/{name}"
        try:
            hf_hub_download(
                source.repo,
                name,
                revision=plan.commit,
                cache_dir=settings.cache_dir,
                endpoint=settings.endpoint,
                token=settings.token,
                tqdm_class=progress.bar_class(f"{source.repo}/{name}"),
            )
        except Exception as exc:
            raise _download_error(source.expert, source.repo, name, url, exc) from None
    _write_ref(settings, source, plan.commit)
    return plan.snapshot(settings)


def check_disk(expert: str, needed: int, target: Path) -> None:
    """Refuse a download that cannot fit, before a byte is written."""
    if needed <= 0:
        return
    place = target
    while not place.exists() and place != place.parent:
        place = place.parent
    free = shutil.disk_usage(place).free
    if needed > free:
        raise DownloadError(
            f"expert {expert!r}: not enough disk space in {target}: the download needs "
            f"{human_bytes(needed)} ({needed} bytes) but {human_bytes(free)} ({free} bytes) "
            "are free; free some space or point HF_HOME elsewhere"
        )


def _repo_dir(settings: HubSettings, repo: str) -> Path:
    return settings.cache_dir / ("models--" + repo.replace("/", "--"))


def _write_ref(settings: HubSettings, source: HubSource, commit: str) -> None:
    """refs/<revision> -> commit, as ``snapshot_download`` keeps it (``hf`` reads it too)."""
    revision = source.revision or "main"
    if _COMMIT.match(revision):
        return
    ref = _repo_dir(settings, source.repo) / "refs" / revision
    if ref.is_file() and ref.read_text().strip() == commit:
        return
    ref.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(ref, commit.encode())


def _download_error(expert: str, repo: str, file: str, url: str, exc: Exception) -> DownloadError:
    """One message with the expert, the file, the URL and the HTTP status (or the cause)."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    request = getattr(response, "request", None)
    where = str(getattr(request, "url", "") or url)
    if status is not None:
        advice = {
            401: "; the repo may be gated or private: set HF_TOKEN",
            403: "; the repo may be gated: accept its terms on the Hub and set HF_TOKEN",
            404: "; check the repo id, the file and `revision:`",
        }.get(int(status), "")
        return DownloadError(
            f"expert {expert!r}: {repo}: {file}: GET {where} answered HTTP {status}{advice}"
        )
    cause = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return DownloadError(f"expert {expert!r}: {repo}: {file}: {where} failed: {cause}")


def hub_reachable(settings: HubSettings, timeout: float = 3.0) -> str | None:
    """None when the Hub answers at all, else why not (a short-timeout probe)."""
    import httpx

    if settings.offline:
        return "HF_HUB_OFFLINE is set"
    try:
        httpx.head(settings.endpoint + "/api/models", timeout=timeout)
    except httpx.HTTPError as exc:
        return f"{settings.endpoint} is unreachable ({type(exc).__name__})"
    return None

