"""The query history in each store (memory, SQLite, PostgreSQL), below the API: how a query was
routed (migration 0006) and what admission control did to it (migration 0010) are kept, rows written
before them are kept too, and every store answers the same filters alike."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import sqlalchemy as sa

from gateway.store import QueryFilter, QueryRecord, SqlStore, Store, open_store
from gateway.store.sql import upgrade
from tests.gateway.conftest import every_store
from tests.gateway.test_store_contract import record

pytestmark = every_store

T = TypeVar("T")


def _record(query_id: str, submitted_at: int = 1, **fields: object) -> QueryRecord:
    return record(query_id, submitted_at, **fields)


def _on_store(url: str, scenario: Callable[[Store], Awaitable[T]]) -> T:
    async def run() -> T:
        store = await open_store(url)
        try:
            return await scenario(store)
        finally:
            await store.close()

    return asyncio.run(run())


OLD_ROW = (
    "INSERT INTO query_history (query_id, backend_name, backend_url, routing_group, submitted_at) "
    "VALUES ('20261201_000000_00001_aaaaa', 'trino-1', 'http://trino-1:8080', 'adhoc', 1)"
)


def _migrated(url: str, revision: str, new: QueryRecord) -> tuple[QueryRecord | None, QueryRecord | None]:
    """A store at ``revision`` with OLD_ROW in it, brought up to date by opening it; then ``new`` is
    written. Both rows as read back."""

    async def scenario() -> tuple[QueryRecord | None, QueryRecord | None]:
        old_schema = await SqlStore.open(url, migrate=False)
        async with old_schema.engine.begin() as connection:
            await connection.run_sync(upgrade, revision)
            await connection.execute(sa.text(OLD_ROW))
        await old_schema.close()
        store = await SqlStore.open(url)  # revision -> head with a row in place
        try:
            await store.record_queries([new])
            return await store.get_query("20261201_000000_00001_aaaaa"), await store.get_query(new.query_id)
        finally:
            await store.close()

    return asyncio.run(scenario())


def test_a_history_from_before_0006_keeps_its_rows_and_new_rows_say_how_they_were_routed(lasting_store_url):
    new = _record("20261201_000000_00002_bbbbb", routing_source="rule", routing_rule="airflow")
    old, new = _migrated(lasting_store_url, "0005", new)
    assert old is not None and (old.backend_name, old.routing_source, old.routing_rule) == ("trino-1", None, None)
    assert new is not None and (new.routing_source, new.routing_rule) == ("rule", "airflow")


TEXTS = {
    "20261201_000000_00001_aaaaa": "SELECT 'a%b'",
    "20261201_000000_00002_bbbbb": "SELECT 'axb'",
    "20261201_000000_00003_ccccc": "select 'A_B'",
    "20261202_000000_00001_ddddd": "SELECT 'aXb' /* a/b */",
}


def _found(store_url: str, filters: list[QueryFilter]) -> list[set[str]]:
    """For each filter, the ids of the matching queries."""

    async def scenario(store: Store) -> list[set[str]]:
        await store.record_queries(
            [
                _record(query_id, n, query_text=text, routing_rule="airflow" if n % 2 else None)
                for n, (query_id, text) in enumerate(TEXTS.items())
            ]
        )
        found = []
        for where in filters:
            total, records = await store.find_queries(where)
            assert total == len(records)
            found.append({r.query_id for r in records})
        return found

    return _on_store(store_url, scenario)


def _ids(*numbers: int) -> set[str]:
    ids = list(TEXTS)
    return {ids[n] for n in numbers}


def test_the_text_filter_finds_a_part_of_the_sql_in_any_case_and_wildcards_are_literal(store_url):
    found = _found(
        store_url,
        [
            QueryFilter(text="a%b"),
            QueryFilter(text="a_b"),
            QueryFilter(text="SELECT 'AX"),
            QueryFilter(text="a/b"),
            QueryFilter(text="%"),
            QueryFilter(text="\x00"),
        ],
    )
    assert found == [_ids(0), _ids(2), _ids(1, 3), _ids(3), _ids(0), set()]


def test_the_id_filter_is_a_prefix_taken_to_the_letter(store_url):
    found = _found(
        store_url,
        [
            QueryFilter(id_prefix="20261201_"),
            QueryFilter(id_prefix="20261201_000000_00002_bbbbb"),
            QueryFilter(id_prefix="2026120_"),  # _ is no wildcard
            QueryFilter(id_prefix="20261201_000000_00001_AAAAA"),  # case counts (SQLite LIKE would ignore it)
            QueryFilter(id_prefix="2" * 300),
        ],
    )
    assert found == [_ids(0, 1, 2), _ids(1), set(), set(), set()]


def test_the_rule_filter_and_the_others_narrow_together(store_url):
    found = _found(
        store_url,
        [
            QueryFilter(routing_rule="airflow"),
            QueryFilter(routing_rule="airflow", text="select"),
            QueryFilter(routing_rule="airflow", id_prefix="20261201_"),
            QueryFilter(routing_rule="nobody"),
        ],
    )
    assert found == [_ids(1, 3), _ids(1, 3), _ids(1), set()]


def test_query_counts_are_bucketed_by_submission_time_group_and_backend(store_url):
    minute = 60_000
    submitted = [
        (119_999, "a", "trino-1", None),  # before since
        (120_000, "a", "trino-1", "FAILED"),
        (150_000, "a", "trino-1", "FINISHED"),
        (179_999, "a", "trino-2", None),
        (170_000, "B", "trino-3", "FAILED"),  # B sorts before a by code point, after it in most collations
        (180_000, "etl", "trino-3", "FAILED"),
        (299_999, "a", "trino-1", None),
        (300_000, "a", "trino-1", None),  # at until: not counted
    ]

    async def scenario(store: Store) -> tuple[list[tuple[int, str, str, int, int]], ...]:
        await store.record_queries(
            [
                _record(f"q{n}", at, routing_group=group, backend_name=backend, state=state)
                for n, (at, group, backend, state) in enumerate(submitted)
            ]
        )
        counted = []
        for args in ((120_000, 300_000, minute), (130_000, 300_000, minute), (0, 10**15, 10 * minute)):
            counts = await store.query_stats(*args)
            counted.append([(c.at, c.routing_group, c.backend_name, c.queries, c.failed) for c in counts])
        return tuple(counted)

    aligned, unaligned, wide = _on_store(store_url, scenario)
    assert aligned == [
        (120_000, "B", "trino-3", 1, 1),
        (120_000, "a", "trino-1", 2, 1),
        (120_000, "a", "trino-2", 1, 0),
        (180_000, "etl", "trino-3", 1, 1),
        (240_000, "a", "trino-1", 1, 0),
    ]
    # Buckets start at multiples of the step whatever since is: the first one counts from since on.
    assert unaligned[:2] == [(120_000, "B", "trino-3", 1, 1), (120_000, "a", "trino-1", 1, 0)]
    assert wide == [
        (0, "B", "trino-3", 1, 1),
        (0, "a", "trino-1", 5, 1),
        (0, "a", "trino-2", 1, 0),
        (0, "etl", "trino-3", 1, 1),
    ]


WAITED = {"gateway_query_id": "20261201_000000_00007_gw0123456789ab", "queued_ms": 1534}
FAILED_OVER = {"attempts": "trino-1: connection refused; trino-2: timed out"}


def test_what_admission_did_to_a_query_is_kept_and_its_gateway_id_finds_it(store_url):
    async def scenario(store: Store) -> tuple[list[QueryRecord | None], list[set[str]]]:
        await store.record_queries(
            [
                _record("20261202_000000_00001_waited", 1, **WAITED),
                _record("20261202_000000_00002_again", 2, **FAILED_OVER),
                _record("20261202_000000_00003_plain", 3),
            ]
        )
        kept = [await store.get_query(f"20261202_000000_0000{n}") for n in ("1_waited", "2_again", "3_plain")]
        found = []
        for prefix in ("20261201_000000_00007_gw0123456789ab", "20261201_", "20261202_", "gw"):
            found.append({r.query_id for r in (await store.find_queries(QueryFilter(id_prefix=prefix)))[1]})
        return kept, found

    (waited, again, plain), found = _on_store(store_url, scenario)
    assert waited is not None and (waited.gateway_query_id, waited.queued_ms, waited.attempts) == (
        WAITED["gateway_query_id"],
        1534,
        None,
    )
    assert again is not None and (again.gateway_query_id, again.queued_ms, again.attempts) == (
        None,
        None,
        FAILED_OVER["attempts"],
    )
    assert plain is not None and (plain.gateway_query_id, plain.queued_ms, plain.attempts) == (None, None, None)
    # The id filter finds a query by the gateway id its client saw first, or by its own.
    everything = {"20261202_000000_00001_waited", "20261202_000000_00002_again", "20261202_000000_00003_plain"}
    assert found == [{"20261202_000000_00001_waited"}, {"20261202_000000_00001_waited"}, everything, set()]


def test_a_history_from_before_0010_keeps_its_rows_and_new_rows_say_how_long_they_waited(lasting_store_url):
    old, new = _migrated(lasting_store_url, "0009", _record("20261201_000000_00002_bbbbb", **WAITED, **FAILED_OVER))
    assert old is not None and old.backend_name == "trino-1"
    assert (old.gateway_query_id, old.queued_ms, old.attempts) == (None, None, None)
    assert new is not None
    assert (new.gateway_query_id, new.queued_ms, new.attempts) == (
        WAITED["gateway_query_id"],
        WAITED["queued_ms"],
        FAILED_OVER["attempts"],
    )


ESTIMATED = {
    "estimate_source": "planner",
    "estimate": '{"available": true, "source": "planner", "latencyMs": 41.5, "cause": null, '
    '"total": {"outputRowCount": 50.0, "outputSizeInBytes": 800.0, "cpuCost": 400.0, "memoryCost": 0.0, '
    '"networkCost": null}, "max": {"outputRowCount": 25.0, "outputSizeInBytes": 400.0, "cpuCost": 400.0, '
    '"memoryCost": 0.0, "networkCost": null}, "fragments": 2, "joins": 0, "tableScans": 1, '
    '"remoteExchanges": 1, "aggregations": 0, "nodes": 3}',
}


def test_a_history_from_before_0013_keeps_its_rows_and_new_rows_keep_their_estimate(lasting_store_url):
    old, new = _migrated(lasting_store_url, "0012", _record("20261201_000000_00002_bbbbb", **ESTIMATED))
    assert old is not None and (old.backend_name, old.estimate_source, old.estimate) == ("trino-1", None, None)
    assert new is not None and (new.estimate_source, new.estimate) == (
        ESTIMATED["estimate_source"],
        ESTIMATED["estimate"],
    )


def test_a_history_from_before_0014_keeps_its_rows_and_new_rows_keep_the_caches_word(lasting_store_url):
    old, new = _migrated(lasting_store_url, "0013", _record("20261201_000000_00002_bbbbb", cache="hit"))
    assert old is not None and (old.backend_name, old.cache) == ("trino-1", None)
    assert new is not None and new.cache == "hit"
