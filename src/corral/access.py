"""Who is asking: the API key's grant for the request being served.

The server authenticates a request once and sets its ``Grant`` here; the runtime checks
it wherever an expert is about to run, so a key limited to some experts cannot reach the
others by any route (an explicit model, a semantic route, a fallback, a coordinator's
tool call). Outside a request (pre-warm, the CLI) there is no grant and nothing is
checked.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from corral.errors import Forbidden

__all__ = ["Grant", "current_grant", "granted", "require_expert"]


@dataclass(frozen=True)
class Grant:
    """What one key may do. ``experts`` None: every expert. ``owner`` is the key's name
    (what it creates is stored under it); None without keys, where nothing is owned.
    ``shared`` keys use every key's files and fitted models; ``admin`` keys also see every
    key's traces and usage."""

    client: str  # the key's name or digest prefix, or the client address without keys
    experts: frozenset[str] | None = None
    owner: str | None = None
    shared: bool = False
    admin: bool = False

    def allows(self, expert: str) -> bool:
        return self.experts is None or expert in self.experts

    @property
    def sees_all_owners(self) -> bool:
        """Whether this grant reaches what other keys made (or nobody's, from before keys)."""
        return self.owner is None or self.shared or self.admin

    def may_see(self, owner: str | None) -> bool:
        """Whether something made by ``owner`` (None: made without keys) is this grant's."""
        return self.sees_all_owners or owner == self.owner

    def allowed_list(self) -> str:
        """The experts this grant may use, for an error message."""
        if self.experts is None:
            return "every expert"
        return ", ".join(sorted(self.experts)) or "no expert"


_grant: contextvars.ContextVar[Grant | None] = contextvars.ContextVar("corral_grant", default=None)


def current_grant() -> Grant | None:
    return _grant.get()


def granted(grant: Grant) -> None:
    """Set the grant for the rest of this request (its task and the tasks it starts)."""
    _grant.set(grant)


def require_expert(name: str) -> None:
    """403 unless the current request's key may use ``name``."""
    grant = _grant.get()
    if grant is not None and not grant.allows(name):
        raise Forbidden(
            f"API key {grant.client!r} may not use expert {name!r}; it may use: "
            f"{grant.allowed_list()} (a key's `experts` in server.api_keys)",
            param="model",
        )
