"""The Kubernetes manifests keep the store's password out of gateway.yaml: the URL names user, host and
database, and the password comes from a Secret as PGPASSWORD, which asyncpg (the gateway's PostgreSQL
driver) reads when the URL has none. Proven on a PostgreSQL that asks for a password."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator

import pytest

from gateway.store import StoreError, open_store
from tests.postgres import HOST, SUPERUSER, PostgresServer

pytestmark = pytest.mark.slow

PASSWORD = "store-password-from-a-secret"


@pytest.fixture(scope="module")
def password_server() -> Iterator[PostgresServer]:
    """A server of its own (the suite's shared one trusts every local connection)."""
    with PostgresServer() as server:
        server.sql(f"ALTER USER {SUPERUSER} PASSWORD '{PASSWORD}'", database="postgres")
        assert server.dir is not None
        hba = server.dir / "data" / "pg_hba.conf"
        subprocess.run(["sed", "-i", "s/trust$/scram-sha-256/", str(hba)], check=True, timeout=10)
        server.sql("SELECT pg_reload_conf()", database="postgres")
        yield server


async def _migrate_and_ping(url: str) -> None:
    store = await open_store(url, migrate=True)
    try:
        await store.ping()
    finally:
        await store.close()


def test_the_store_takes_its_password_from_pgpassword(password_server, monkeypatch) -> None:
    url = f"postgresql://{SUPERUSER}@{HOST}:{password_server.port}/gateway"
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", "/nonexistent")  # nor from a ~/.pgpass of this machine
    with pytest.raises(StoreError, match="password authentication failed"):
        asyncio.run(_migrate_and_ping(url))
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    asyncio.run(_migrate_and_ping(url))
