"""Fixtures for gateway tests: three trinosim clusters and a gateway in front of them.

Every test that uses ``gateway`` runs twice: with the embedded SQLite store and with PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.testing import GatewayProcess, running
from trinosim import TrinoSimProcess

STORES = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def clusters() -> Iterator[list[TrinoSimProcess]]:
    """trino-1 and trino-2 build URIs from X-Forwarded-* headers; trino-3 ignores them, so the
    gateway must rewrite its URIs itself."""
    servers = [
        TrinoSimProcess(name="trino-1"),
        TrinoSimProcess(name="trino-2"),
        TrinoSimProcess(name="trino-3", forwarded="ignore"),
    ]
    with running(servers):
        yield servers


@pytest.fixture(scope="session", params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def postgres(store_kind: str):
    if store_kind != "postgres":
        yield None
        return
    from tests.postgres import PostgresServer

    with PostgresServer() as server:
        yield server


@pytest.fixture
def store_url(store_kind: str, postgres, tmp_path) -> str:
    """A fresh, empty store for one test."""
    if store_kind == "postgres":
        postgres.reset()
        return postgres.url(driver="postgresql")
    return f"sqlite:///{tmp_path / 'gateway.db'}"


@pytest.fixture
def gateway(clusters: list[TrinoSimProcess], store_url: str) -> Iterator[GatewayProcess]:
    """A gateway with trino-1 and trino-2 in group adhoc and trino-3 in group etl."""
    config = {
        "backends": [
            {"name": "trino-1", "proxy_to": clusters[0].url, "routing_group": "adhoc"},
            {"name": "trino-2", "proxy_to": clusters[1].url, "routing_group": "adhoc"},
            {"name": "trino-3", "proxy_to": clusters[2].url, "routing_group": "etl"},
        ]
    }
    with GatewayProcess(store=store_url, config=config) as process:
        yield process


def owner(clusters: list[TrinoSimProcess], query_id: str) -> list[str]:
    """Names of the clusters that have a record of ``query_id``."""
    return [c.name for c in clusters if any(q["queryId"] == query_id for q in c.queries())]
