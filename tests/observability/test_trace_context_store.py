"""The trace context of a query in the store: migration 0002 on a store that has history already."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig

from gateway.store import QueryRecord, SqlStore
from gateway.store.sql import MIGRATIONS


def _upgrade_to(connection: sa.Connection, revision: str) -> None:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def _scenario(url: str) -> tuple[tuple[str, str, str | None] | None, tuple[str, str, str | None] | None]:
    store = await SqlStore.open(url, migrate=False)
    async with store.engine.begin() as connection:
        await connection.run_sync(_upgrade_to, "0001")
        await connection.execute(
            sa.text(
                "INSERT INTO query_history (query_id, backend_name, backend_url, routing_group, submitted_at) "
                "VALUES ('20261123_000000_00001_aaaaa', 'trino-1', 'http://trino-1:8080', 'adhoc', 1)"
            )
        )
    await store.close()
    store = await SqlStore.open(url, migrate=True)  # 0001 -> 0002 with a row in place
    try:
        await store.record_queries(
            [
                QueryRecord(
                    query_id="20261123_000000_00002_bbbbb",
                    backend_name="trino-2",
                    backend_url="http://trino-2:8080",
                    routing_group="adhoc",
                    user_name="alice",
                    source=None,
                    client_tags=None,
                    query_text="SELECT 1",
                    submitted_at=2,
                    trace_parent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                )
            ]
        )
        old, new = (
            await store.get_query("20261123_000000_00001_aaaaa"),
            await store.get_query("20261123_000000_00002_bbbbb"),
        )
        assert old is not None and new is not None
        return (old.backend_name, old.backend_url, old.trace_parent), (
            new.backend_name,
            new.backend_url,
            new.trace_parent,
        )
    finally:
        await store.close()


def test_an_existing_history_gains_a_trace_column_and_new_queries_keep_their_trace(tmp_path):
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    old, new = asyncio.run(_scenario(url))
    assert old == ("trino-1", "http://trino-1:8080", None)
    assert new == ("trino-2", "http://trino-2:8080", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
