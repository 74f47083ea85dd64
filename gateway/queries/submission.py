"""A new query as a client submitted it: everything needed to send it to a backend, at once or, after
it waited in the gateway, on the client's later poll."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, eq=False)
class Submission:
    sql: str
    body: bytes
    user: str | None
    """The verified user if the gateway verifies users, else the X-Trino-User header."""
    source: str | None
    client_tags: str | None
    transaction: str | None
    group: str
    routed_by: tuple[str, str | None]
    """What chose the group (header, rule, external, default, transaction, kill_query) and the rule."""
    headers: list[tuple[bytes, bytes]]
    """The request's headers as sent to a backend."""
    failover: bool = False
    """It may be sent to another backend if its own fails before any row reached the client (a
    read-only statement outside a transaction, unless the config or a rule said no)."""
