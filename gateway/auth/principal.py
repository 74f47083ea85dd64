"""An authenticated caller and the roles it has (trinodb/trino-gateway's vocabulary)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "ADMIN"
    """Change backends, rules, drain; read everything."""
    USER = "USER"
    """Read backends and health; one's own query history."""
    API = "API"
    """Automation: what ADMIN may, without the UI."""


@dataclass(frozen=True)
class Principal:
    name: str
    groups: frozenset[str] = frozenset()
    method: str = "none"
    """How it was authenticated: password, ldap, oidc, session, or open (no auth configured)."""
    roles: frozenset[Role] = frozenset()

    @property
    def may_change(self) -> bool:
        return bool(self.roles & {Role.ADMIN, Role.API})

    @property
    def sees_all_queries(self) -> bool:
        return self.may_change

    @property
    def may_use_the_ui(self) -> bool:
        return bool(self.roles & {Role.ADMIN, Role.USER})


# No auth configured: whoever reaches the port may do everything (make demo; logged loudly).
OPEN = Principal("anonymous", method="open", roles=frozenset(Role))
