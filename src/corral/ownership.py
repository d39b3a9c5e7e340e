"""Whose is it: fitted models named per API key, so tenants cannot reach each other's.

With ``server.api_keys`` set, a detector or graph model is stored under the key that
fitted it: key ``a``'s ``sensors`` is ``a/sensors``, and key ``b`` may have its own
``sensors`` beside it. A bare name always means the asking key's own; a key with
``shared: true`` or ``role: admin`` may name another key's as ``owner/name`` (over HTTP:
``?owner=``), and what was fitted before keys were configured as ``_/name``. Without
keys nothing is owned and names stay bare, as they always were.

Names are qualified where a request's input is validated (in the request's task, where
the key's grant is known), so the experts, which run on worker threads, only ever see
qualified names.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from corral.access import current_grant
from corral.errors import Forbidden

__all__ = [
    "OWNER_PATTERN",
    "QUALIFIED_PATTERN",
    "UNOWNED",
    "OwnedName",
    "canonical",
    "qualify",
    "split",
]

UNOWNED = "_"  # the owner of what was made without keys (no key name starts with "_")
_OWNER = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}"
_BARE = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
OWNER_PATTERN = rf"^{_OWNER}$"
QUALIFIED_PATTERN = rf"^(?:{_OWNER}/)?{_BARE}$"


def split(ref: str) -> tuple[str | None, str]:
    """``"owner/name"`` -> (owner, name); a bare or ``_/`` name -> (None, name)."""
    owner, sep, name = ref.rpartition("/")
    return (owner if sep and owner != UNOWNED else None), name


def canonical(ref: str) -> str:
    """One spelling per stored model, whoever asks: ``owner/name``, ``_/name`` unowned."""
    owner, name = split(ref)
    return f"{owner or UNOWNED}/{name}"


def qualify(ref: str, owner: str | None = None, *, what: str = "models") -> str:
    """The stored name for ``ref`` as the current request's key means it: its own unless
    ``owner`` (or an ``owner/`` prefix) names another's, which only shared and admin keys
    may (403 otherwise). Qualifying a qualified name again gives the same name."""
    if "/" in ref:
        owner, ref = ref.split("/", 1)
    grant = current_grant()
    mine = grant.owner if grant is not None else None
    if mine is None:  # no keys: nothing is owned, names stay as given
        return ref if owner in (None, UNOWNED) else f"{owner}/{ref}"
    if owner is None or owner == mine:
        return f"{mine}/{ref}"
    assert grant is not None
    if not grant.sees_all_owners:
        raise Forbidden(
            f"API key {grant.client!r} may use only its own {what}; naming owner "
            f"{owner!r} needs `shared: true` or `role: admin` on the key in server.api_keys",
            param="owner",
        )
    return f"{owner}/{ref}"


def _qualified(ref: str) -> str:
    return qualify(ref)


OwnedName = Annotated[
    str,
    Field(
        pattern=QUALIFIED_PATTERN,
        description="Name of the fitted model (letters, digits, ._-), the key's own; "
        "'owner/name' for another key's (shared or admin keys).",
    ),
    AfterValidator(_qualified),
]
