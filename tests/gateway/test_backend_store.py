"""The backend table below the API: migration 0009 gives a store that has backends the capacity column
(max_running), and 0015 the scaler's, keeping every backend and every field of it."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from gateway.store import SqlStore
from gateway.store.backend import Backend, BackendScaler
from gateway.store.sql import upgrade
from tests.gateway.conftest import every_store

pytestmark = every_store

# Backends as a gateway before 0009 wrote them: every column of the record as it was then.
OLD_ROWS = (
    "INSERT INTO gateway_backend (name, proxy_to, external_url, routing_group, active, updated_at, weight, monitor, "
    "tls) VALUES ('trino-1', 'http://trino-1:8080', NULL, 'adhoc', TRUE, 1, 2.5, 'JMX', NULL), "
    "('trino-etl', 'https://trino-etl:8443', 'https://etl.example.com', 'etl', FALSE, 1, 1.0, NULL, "
    """'{"ca_file": "/etc/ca.pem", "cert_file": null, "key_file": null, "verify": true}')"""
)


def test_a_store_from_before_0009_keeps_its_backends_and_they_take_a_max_running(lasting_store_url):
    async def scenario() -> tuple[list[Backend], Backend | None]:
        old_schema = await SqlStore.open(lasting_store_url, migrate=False)
        async with old_schema.engine.begin() as connection:
            await connection.run_sync(upgrade, "0008")
            await connection.execute(sa.text(OLD_ROWS))
        await old_schema.close()
        store = await SqlStore.open(lasting_store_url)  # 0008 -> 0009 with backends in place
        try:
            migrated = await store.list_backends()
            await store.update_backend(migrated[0].model_copy(update={"max_running": 12}))
            return migrated, await store.get_backend("trino-1")
        finally:
            await store.close()

    migrated, capped = asyncio.run(scenario())
    assert [b.model_dump() for b in migrated] == [
        {
            "name": "trino-1",
            "proxy_to": "http://trino-1:8080",
            "external_url": None,
            "routing_group": "adhoc",
            "active": True,
            "weight": 2.5,
            "max_running": None,
            "monitor": "JMX",
            "tls": None,
            "scaler": None,
        },
        {
            "name": "trino-etl",
            "proxy_to": "https://trino-etl:8443",
            "external_url": "https://etl.example.com",
            "routing_group": "etl",
            "active": False,
            "weight": 1.0,
            "max_running": None,
            "monitor": None,
            "tls": {"ca_file": "/etc/ca.pem", "cert_file": None, "key_file": None, "verify": True},
            "scaler": None,
        },
    ]
    assert capped is not None and capped.max_running == 12
    assert capped.model_copy(update={"max_running": None}) == migrated[0]


def test_a_store_from_before_0015_keeps_its_backends_and_they_take_a_scaler(lasting_store_url):
    scaler = BackendScaler(kind="docker", container="trino-etl", timeout=60.0)

    async def scenario() -> tuple[list[Backend], Backend | None]:
        old_schema = await SqlStore.open(lasting_store_url, migrate=False)
        async with old_schema.engine.begin() as connection:
            await connection.run_sync(upgrade, "0014")
            await connection.execute(sa.text(OLD_ROWS))
            await connection.execute(sa.text("UPDATE gateway_backend SET max_running = 5 WHERE name = 'trino-etl'"))
        await old_schema.close()
        store = await SqlStore.open(lasting_store_url)  # 0014 -> 0015 with backends in place
        try:
            migrated = await store.list_backends()
            await store.update_backend(migrated[1].model_copy(update={"scaler": scaler}))
            return migrated, await store.get_backend("trino-etl")
        finally:
            await store.close()

    migrated, scaled = asyncio.run(scenario())
    assert [(b.name, b.max_running, b.scaler) for b in migrated] == [("trino-1", None, None), ("trino-etl", 5, None)]
    assert migrated[1].tls is not None
    assert scaled == migrated[1].model_copy(update={"scaler": scaler})
