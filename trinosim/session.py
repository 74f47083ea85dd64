"""The client session a query runs in, read from the ``X-Trino-*`` request headers."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, unquote_plus

import jwt
from multidict import CIMultiDictProxy

from trinosim.durations import parse_duration


class SessionError(ValueError):
    """A header the server refuses; Trino answers these with 400 and a text body."""


# System session properties trinosim knows, with their defaults; anything else is refused like
# Trino refuses an unknown property. ``sim_run_time`` is trinosim's own: how long a query runs.
SESSION_PROPERTIES: dict[str, tuple[str, str, str]] = {
    "sim_run_time": ("0s", "varchar", "trinosim: time a query spends RUNNING before its results appear"),
    "query_max_run_time": ("100.00d", "varchar", "Maximum run time of a query"),
    "query_max_execution_time": ("100.00d", "varchar", "Maximum execution time of a query"),
    "join_distribution_type": ("AUTOMATIC", "varchar", "Join distribution type"),
    "optimize_hash_generation": (
        "true",
        "boolean",
        "Compute hash codes for distribution, joins, and aggregations early",
    ),
}


def _values(headers: CIMultiDictProxy[str], name: str) -> list[str]:
    """Every comma-separated item of every line of a header (Java sends a line per item)."""
    items: list[str] = []
    for line in headers.getall(name, []):
        items.extend(part.strip() for part in line.split(",") if part.strip())
    return items


def _key_values(headers: CIMultiDictProxy[str], name: str, plus: bool = False) -> dict[str, str]:
    decode = unquote_plus if plus else unquote
    result = {}
    for item in _values(headers, name):
        parts = item.split("=")
        if len(parts) != 2:
            raise SessionError(f"Invalid {name} header")
        result[decode(parts[0].strip())] = decode(parts[1].strip())
    return result


@dataclass
class Session:
    user: str
    source: str | None = None
    catalog: str | None = None
    schema: str | None = None
    time_zone: str | None = None
    client_tags: list[str] = field(default_factory=list)
    client_info: str | None = None
    properties: dict[str, str] = field(default_factory=dict)
    prepared: dict[str, str] = field(default_factory=dict)
    transaction_id: str | None = None
    user_agent: str | None = None

    @property
    def run_time(self) -> float:
        """Seconds the query should stay RUNNING (trinosim's ``sim_run_time`` property)."""
        return parse_duration(self.properties.get("sim_run_time", "0s"))

    def to_json(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "source": self.source,
            "catalog": self.catalog,
            "schema": self.schema,
            "timeZone": self.time_zone,
            "clientTags": self.client_tags,
            "clientInfo": self.client_info,
            "systemProperties": self.properties,
            "transactionId": self.transaction_id,
            "userAgent": self.user_agent,
        }


def parse_session(headers: CIMultiDictProxy[str]) -> Session:
    """The session of a ``POST /v1/statement``, validated the way Trino validates it."""
    user = (headers.get("X-Trino-User") or "").strip() or _credentials_user(headers.get("Authorization"))
    if not user:
        raise SessionError("User must be set")
    catalog = headers.get("X-Trino-Catalog") or None
    schema = headers.get("X-Trino-Schema") or None
    if schema and not catalog:
        raise SessionError("Schema is set but catalog is not")
    properties = _key_values(headers, "X-Trino-Session", plus=True)
    for name, value in properties.items():
        if name not in SESSION_PROPERTIES and "." not in name:
            raise SessionError(f"Invalid X-Trino-Session header: unknown session property {name}")
        if name == "sim_run_time":
            try:
                parse_duration(value)
            except ValueError as exc:
                raise SessionError(f"Invalid X-Trino-Session header: {exc}") from None
    transaction = headers.get("X-Trino-Transaction-Id")
    return Session(
        user=user,
        source=headers.get("X-Trino-Source"),
        catalog=catalog,
        schema=schema,
        time_zone=headers.get("X-Trino-Time-Zone"),
        client_tags=_values(headers, "X-Trino-Client-Tags"),
        client_info=headers.get("X-Trino-Client-Info"),
        properties=properties,
        prepared=_key_values(headers, "X-Trino-Prepared-Statement", plus=True),
        transaction_id=None if not transaction or transaction.upper() == "NONE" else transaction,
        user_agent=headers.get("User-Agent"),
    )


def _credentials_user(authorization: str | None) -> str:
    """Without ``X-Trino-User`` Trino's session user is the authenticated one. trinosim authenticates
    nobody (outside OAuth2, which puts its principal in the header first): it takes the user the
    credentials name, Basic's user or a bearer JWT's ``sub``, unverified."""
    scheme, _, credentials = (authorization or "").partition(" ")
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(credentials.strip(), validate=True).decode("utf-8").partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            return ""
    if scheme.lower() == "bearer":
        try:
            subject = jwt.decode(credentials.strip(), options={"verify_signature": False}).get("sub")
        except jwt.PyJWTError:
            return ""
        return subject if isinstance(subject, str) else ""
    return ""
