"""The one error a download raises: it names the expert, the file, the URL and the status."""

from __future__ import annotations

from corral.errors import ExpertUnavailable

__all__ = ["DownloadError"]


class DownloadError(ExpertUnavailable):
    """A model's files could not be fetched (an expert without weights is unavailable)."""

    code = "download_failed"
