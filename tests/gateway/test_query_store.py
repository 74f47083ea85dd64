"""The query history in the stores, below the API: how a query was routed (migration 0006) is kept,
and rows written before it are kept too."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from gateway.store import QueryRecord, SqlStore
from gateway.store.sql import upgrade


def _record(query_id: str, submitted_at: int = 1, **fields: object) -> QueryRecord:
    values: dict[str, object] = {
        "backend_name": "trino-1",
        "backend_url": "http://trino-1:8080",
        "routing_group": "adhoc",
        "user_name": "alice",
        "source": None,
        "client_tags": None,
        "query_text": "SELECT 1",
    }
    values.update(fields)
    return QueryRecord(query_id=query_id, submitted_at=submitted_at, **values)  # type: ignore[arg-type]


OLD_ROW = (
    "INSERT INTO query_history (query_id, backend_name, backend_url, routing_group, submitted_at) "
    "VALUES ('20261201_000000_00001_aaaaa', 'trino-1', 'http://trino-1:8080', 'adhoc', 1)"
)


def test_a_history_from_before_0006_keeps_its_rows_and_new_rows_say_how_they_were_routed(lasting_store_url):
    async def scenario() -> tuple[QueryRecord | None, QueryRecord | None]:
        old_schema = await SqlStore.open(lasting_store_url, migrate=False)
        async with old_schema.engine.begin() as connection:
            await connection.run_sync(upgrade, "0005")
            await connection.execute(sa.text(OLD_ROW))
        await old_schema.close()
        store = await SqlStore.open(lasting_store_url)  # 0005 -> 0006 with a row in place
        try:
            new = _record("20261201_000000_00002_bbbbb", routing_source="rule", routing_rule="airflow")
            await store.record_queries([new])
            return await store.get_query("20261201_000000_00001_aaaaa"), await store.get_query(new.query_id)
        finally:
            await store.close()

    old, new = asyncio.run(scenario())
    assert old is not None and (old.backend_name, old.routing_source, old.routing_rule) == ("trino-1", None, None)
    assert new is not None and (new.routing_source, new.routing_rule) == ("rule", "airflow")
