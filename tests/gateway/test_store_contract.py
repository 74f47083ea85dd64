"""The store's contract (gateway.store.base.Store), case by case on every kind: in memory, the
embedded SQLite and PostgreSQL. Each test drives the interface directly, as the gateway does, and
expects the same answers from each store: a behaviour that differs by store is a bug.

The gateway's own tests run on the in-memory store unless the store is what they prove; what the
store does for them (backends, the history and its filters, transactions, the audit trail, drain
counts, health leases, the fleet's routing rules and change notices, the result cache's purge marks,
the cluster manager's records and leases by name) is proved here on all three.
What only a store that outlives its gateway can do (a second gateway on the same store, a restart)
is proved on the SQL stores by the tests that need it (``lasting_store_url``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from gateway.store import (
    AuditEntry,
    BackendWork,
    CachedResult,
    ClusterRecord,
    DuplicateBackend,
    DuplicateQuery,
    QueryFilter,
    QueryOutcome,
    QueryRecord,
    SharedCheck,
    SharedRulesText,
    Store,
    TransactionBinding,
    open_store,
)
from gateway.store.backend import Backend, BackendScaler, BackendTls
from gateway.store.records import ANYTHING_CHANGED, BACKENDS_CHANGED, CLUSTER_DETAIL_LENGTH, RULES_CHANGED
from tests.gateway.conftest import every_store

pytestmark = every_store

T = TypeVar("T")


def on_store(url: str, scenario: Callable[[Store], Awaitable[T]]) -> T:
    async def run() -> T:
        store = await open_store(url)
        try:
            return await scenario(store)
        finally:
            await store.close()

    return asyncio.run(run())


def record(query_id: str, submitted_at: int, **fields: object) -> QueryRecord:
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


def binding(transaction_id: str, backend: str, started_at: int, last_used_at: int | None = None) -> TransactionBinding:
    return TransactionBinding(
        transaction_id=transaction_id,
        backend_name=backend,
        backend_url=f"http://{backend}:8080",
        started_at=started_at,
        last_used_at=started_at if last_used_at is None else last_used_at,
        started_by=f"q-{transaction_id}",
    )


FULL = Backend(
    name="trino-etl",
    proxy_to="https://trino-etl:8443",
    external_url="https://etl.example.com",
    routing_group="etl",
    active=False,
    weight=2.5,
    max_running=7,
    monitor="JMX",
    tls=BackendTls(ca_file="/etc/ca.pem", verify=True),
)
PLAIN = Backend(name="trino-1", proxy_to="http://trino-1:8080")


# -- backends -----------------------------------------------------------------------------------
def test_backends_are_kept_field_for_field_listed_by_name_and_their_names_are_unique(store_url):
    async def scenario(store: Store) -> None:
        assert await store.list_backends() == []
        await store.add_backend(FULL)
        await store.add_backend(PLAIN)
        assert await store.list_backends() == [PLAIN, FULL]
        assert await store.get_backend("trino-etl") == FULL
        assert await store.get_backend("nobody") is None
        with pytest.raises(DuplicateBackend):
            await store.add_backend(PLAIN.model_copy(update={"proxy_to": "http://elsewhere:8080"}))
        assert await store.get_backend("trino-1") == PLAIN

    on_store(store_url, scenario)


def test_a_backend_is_updated_activated_and_deleted_by_name_and_an_unknown_name_says_so(store_url):
    async def scenario(store: Store) -> None:
        await store.add_backend(FULL)
        moved = FULL.model_copy(update={"proxy_to": "https://etl-2:8443", "weight": 1.0, "max_running": None})
        assert await store.update_backend(moved) is True
        assert await store.get_backend("trino-etl") == moved
        assert await store.update_backend(PLAIN) is False
        assert await store.get_backend("trino-1") is None
        # The active flag alone changes: every other field stays.
        assert await store.set_active("trino-etl", True) is True
        assert await store.get_backend("trino-etl") == moved.model_copy(update={"active": True})
        assert await store.set_active("nobody", False) is False
        assert await store.delete_backend("trino-etl") is True
        assert await store.delete_backend("trino-etl") is False
        assert await store.list_backends() == []

    on_store(store_url, scenario)


def test_a_backends_scaler_is_kept_whole_whether_commands_or_a_docker_container(store_url):
    commands = BackendScaler(
        kind="command",
        start="kubectl scale statefulset/trino-etl --replicas=1",
        stop="kubectl scale statefulset/trino-etl --replicas=0",
        status="test $(kubectl get statefulset/trino-etl -o jsonpath='{.status.readyReplicas}') = 1",
        timeout=300.0,
    )
    docker = BackendScaler(kind="docker", container="trino-2")
    scaled = FULL.model_copy(update={"scaler": commands})
    container = Backend(name="trino-2", proxy_to="http://trino-2:8080", scaler=docker)

    async def scenario(store: Store) -> None:
        await store.add_backend(scaled)
        await store.add_backend(container)
        await store.add_backend(PLAIN)
        assert await store.get_backend("trino-etl") == scaled
        assert await store.get_backend("trino-2") == container
        assert await store.list_backends() == [PLAIN, container, scaled]
        # Replaced, then taken away, by an update; the active flag alone leaves it as it is.
        swapped = scaled.model_copy(update={"scaler": docker.model_copy(update={"container": "trino-etl"})})
        assert await store.update_backend(swapped) is True
        assert await store.get_backend("trino-etl") == swapped
        assert await store.set_active("trino-etl", True) is True
        assert await store.get_backend("trino-etl") == swapped.model_copy(update={"active": True})
        unscaled = container.model_copy(update={"scaler": None})
        assert await store.update_backend(unscaled) is True
        assert await store.get_backend("trino-2") == unscaled

    on_store(store_url, scenario)


# -- the query history --------------------------------------------------------------------------
def test_queries_are_recorded_all_or_none_and_read_back_as_written(store_url):
    first = record("q1", 1_000, source="airflow", client_tags="a,b", trace_parent="00-aa-bb-01", transaction_id="t1")
    first.routing_source, first.routing_rule = "rule", "airflow"
    first.estimate_source, first.estimate = "planner", '{"available": true, "source": "planner", "latencyMs": 41.5}'

    async def scenario(store: Store) -> None:
        await store.record_queries([first])
        assert await store.get_query("q1") == first
        assert await store.get_query("q9") is None
        # One known id fails the whole batch; so does an id twice in one batch.
        with pytest.raises(DuplicateQuery):
            await store.record_queries([record("q2", 2_000), record("q1", 3_000)])
        with pytest.raises(DuplicateQuery):
            await store.record_queries([record("q3", 2_000), record("q3", 3_000)])
        assert await store.find_queries(QueryFilter()) == (1, [first])

    on_store(store_url, scenario)


def test_the_result_caches_word_on_a_query_is_kept_with_it(store_url):
    words = ["hit", "miss", "waited", "refused", "off", "not eligible: " + "non-deterministic function now() " * 4]
    records = [record(f"q{n}", n, cache=word) for n, word in enumerate(words)] + [record("q-none", 99)]

    async def scenario(store: Store) -> list[str | None]:
        await store.record_queries(records)
        assert [await store.get_query(r.query_id) for r in records] == records
        return [r.cache for r in (await store.find_queries(QueryFilter()))[1]]

    assert on_store(store_url, scenario) == [None, *reversed(words)]


def test_a_query_keeps_its_first_outcome_and_its_elapsed_time_is_counted_from_its_submission(store_url):
    async def scenario(store: Store) -> list[QueryRecord | None]:
        await store.record_queries([record("q1", 1_000), record("q2", 2_000)])
        await store.finish_queries(
            [
                QueryOutcome("q1", "FAILED", "TABLE_NOT_FOUND", 1_750),
                QueryOutcome("q2", "FINISHED", None, 2_010),
                QueryOutcome("unknown", "FINISHED", None, 5_000),  # nothing to finish: no error
            ]
        )
        await store.finish_queries([QueryOutcome("q1", "FINISHED", None, 9_000)])
        return [await store.get_query("q1"), await store.get_query("q2"), await store.get_query("unknown")]

    failed, finished, unknown = on_store(store_url, scenario)
    assert failed is not None and (failed.state, failed.error_name, failed.finished_at, failed.elapsed_ms) == (
        "FAILED",
        "TABLE_NOT_FOUND",
        1_750,
        750,
    )
    assert finished is not None and (finished.state, finished.error_name, finished.elapsed_ms) == ("FINISHED", None, 10)
    assert unknown is None


def test_the_history_filters_by_user_backend_group_state_transaction_and_time_newest_first_in_pages(store_url):
    rows = [
        record("q1", 1_000, user_name="alice", backend_name="trino-1"),
        record("q2", 2_000, user_name="bob", backend_name="trino-2"),
        record("q3", 3_000, user_name="alice", routing_group="etl", backend_name="trino-3", transaction_id="t1"),
        record("q4", 4_000, user_name="alice", backend_name="trino-2"),
        record("q5", 4_000, user_name="carol", backend_name="trino-1"),  # same time as q4: by id
    ]

    async def scenario(store: Store) -> list[tuple[int, list[str]]]:
        await store.record_queries(rows)
        await store.finish_queries(
            [QueryOutcome("q1", "FINISHED", None, 1_100), QueryOutcome("q2", "FAILED", "X", 2_100)]
        )
        found = []
        for where, limit, offset in (
            (QueryFilter(), 100, 0),
            (QueryFilter(), 2, 0),
            (QueryFilter(), 2, 2),
            (QueryFilter(), 2, 4),
            (QueryFilter(user="alice"), 100, 0),
            (QueryFilter(backend="trino-2"), 100, 0),
            (QueryFilter(routing_group="etl"), 100, 0),
            (QueryFilter(state="RUNNING"), 100, 0),  # no outcome yet
            (QueryFilter(state="FAILED"), 100, 0),
            (QueryFilter(transaction_id="t1"), 100, 0),
            (QueryFilter(since_ms=2_000, until_ms=4_000), 100, 0),  # since counts, until does not
            (QueryFilter(user="alice", backend="trino-1", state="FINISHED"), 100, 0),
            (QueryFilter(user="nobody"), 100, 0),
        ):
            total, page = await store.find_queries(where, limit, offset)
            found.append((total, [r.query_id for r in page]))
        return found

    assert on_store(store_url, scenario) == [
        (5, ["q4", "q5", "q3", "q2", "q1"]),
        (5, ["q4", "q5"]),
        (5, ["q3", "q2"]),
        (5, ["q1"]),
        (3, ["q4", "q3", "q1"]),
        (2, ["q4", "q2"]),
        (1, ["q3"]),
        (3, ["q4", "q5", "q3"]),
        (1, ["q2"]),
        (1, ["q3"]),
        (2, ["q3", "q2"]),
        (1, ["q1"]),
        (0, []),
    ]


def test_unfinished_queries_come_oldest_first_per_backend_up_to_a_time_and_a_count(store_url):
    async def scenario(store: Store) -> list[list[str]]:
        await store.record_queries(
            [
                record("q3", 3_000, backend_name="trino-1"),
                record("q1", 1_000, backend_name="trino-1"),
                record("q2", 2_000, backend_name="trino-2"),
                record("q4", 4_000, backend_name="trino-1"),
                record("q0", 500, backend_name="trino-1"),
            ]
        )
        await store.finish_queries([QueryOutcome("q0", "FINISHED", None, 600)])
        return [
            [r.query_id for r in await store.unfinished_queries(backend, before, limit)]
            for backend, before, limit in (
                (None, 10_000, 100),
                ("trino-1", 10_000, 100),
                ("trino-1", 3_000, 100),  # submitted before 3000 only
                (None, 10_000, 2),
                ("trino-9", 10_000, 100),
            )
        ]

    assert on_store(store_url, scenario) == [["q1", "q2", "q3", "q4"], ["q1", "q3", "q4"], ["q1"], ["q1", "q2"], []]


def test_purging_removes_queries_submitted_and_transactions_ended_before_a_time(store_url):
    async def scenario(store: Store) -> tuple[int, list[str], list[str | None]]:
        await store.record_queries([record("old", 1_000), record("edge", 5_000), record("new", 9_000)])
        for tid, started in (("t-ended-old", 1_000), ("t-ended-new", 2_000), ("t-open", 1_000)):
            await store.bind_transaction(binding(tid, "trino-1", started))
        await store.end_transactions("committed", 4_000, ids=["t-ended-old"])
        await store.end_transactions("committed", 6_000, ids=["t-ended-new"])
        purged = await store.purge_queries(5_000)
        kept = [r.query_id for r in (await store.find_queries(QueryFilter()))[1]]
        transactions = [await store.get_transaction(t) for t in ("t-ended-old", "t-ended-new", "t-open")]
        return purged, kept, [None if t is None else t.transaction_id for t in transactions]

    assert on_store(store_url, scenario) == (1, ["new", "edge"], [None, "t-ended-new", "t-open"])


# -- transactions -------------------------------------------------------------------------------
def test_a_transaction_is_bound_once_and_the_first_binding_stands(store_url):
    async def scenario(store: Store) -> None:
        first = binding("t1", "trino-1", 1_000)
        assert await store.bind_transaction(first) == first
        # Another worker saw the same id and chose another backend: the first binding stands.
        assert await store.bind_transaction(binding("t1", "trino-2", 1_500)) == first
        assert await store.get_transaction("t1") == first
        assert await store.get_transaction("t9") is None

    on_store(store_url, scenario)


def test_open_transactions_are_touched_and_ended_by_id_backend_age_or_idleness(store_url):
    async def scenario(store: Store) -> None:
        for tid, backend, started in (("a", "trino-1", 1_000), ("b", "trino-1", 2_000), ("c", "trino-2", 3_000)):
            await store.bind_transaction(binding(tid, backend, started))
        await store.touch_transactions({"a": 8_000, "c": 9_000, "unknown": 9_000})
        assert [(t.transaction_id, t.last_used_at) for t in await store.open_transactions()] == [
            ("a", 8_000),
            ("b", 2_000),
            ("c", 9_000),
        ]
        assert [t.transaction_id for t in await store.open_transactions("trino-1")] == ["a", "b"]
        # Idle since 5000: only b was not used after it.
        assert await store.end_transactions("idle", 10_000, idle_since=5_000) == ["b"]
        ended = await store.get_transaction("b")
        assert ended is not None and (ended.ended_at, ended.end_reason, ended.open) == (10_000, "idle", False)
        # An ended transaction is not touched, nor ended again.
        await store.touch_transactions({"b": 11_000})
        assert (await store.get_transaction("b")) == ended
        assert await store.end_transactions("rolled back", 12_000, ids=["b"]) == []
        assert await store.end_transactions("backend restarted", 12_000, backend="trino-9") == []
        assert await store.end_transactions("too old", 12_000, started_before=1_000) == []
        # Every condition given must hold.
        assert await store.end_transactions("x", 12_000, ids=["a", "c"], backend="trino-2", started_before=5_000) == [
            "c"
        ]
        assert await store.end_transactions("backend restarted", 13_000, backend="trino-1") == ["a"]
        assert await store.open_transactions() == []

    on_store(store_url, scenario)


# -- the audit trail ----------------------------------------------------------------------------
def test_the_audit_trail_keeps_every_entry_newest_first_by_actor_and_time_in_pages(store_url):
    entries = [
        AuditEntry(1_000, "alice", "password", "10.0.0.1", "backend.add", "trino-1", "done", None, '{"a": 1}'),
        AuditEntry(2_000, "bob", "ldap", "10.0.0.2", "backend.deactivate", "trino-1", "refused"),
        AuditEntry(3_000, "alice", "oidc", "::1", "rules.update", None, "failed", "old", "new"),
    ]

    async def scenario(store: Store) -> list[tuple[int, list[tuple[str, int]]]]:
        for entry in entries:
            await store.record_audit(entry)
        total, everything = await store.find_audit()
        ids = [e.id for e in everything]
        assert len(set(ids)) == 3 and None not in ids
        # Read back field for field (the id is the store's).
        assert [dataclasses.replace(e, id=None) for e in everything] == entries[::-1]
        found = []
        for actor, since, limit, offset in (
            (None, None, 100, 0),
            ("alice", None, 100, 0),
            (None, 2_000, 100, 0),
            (None, None, 1, 1),
            ("carol", None, 100, 0),
        ):
            total, page = await store.find_audit(actor, since, limit, offset)
            found.append((total, [(e.actor, e.at) for e in page]))
        return found

    assert on_store(store_url, scenario) == [
        (3, [("alice", 3_000), ("bob", 2_000), ("alice", 1_000)]),
        (2, [("alice", 3_000), ("alice", 1_000)]),
        (2, [("alice", 3_000), ("bob", 2_000)]),
        (3, [("bob", 2_000)]),
        (0, []),
    ]


# -- what a backend still has to finish (drain) -------------------------------------------------
def test_backend_work_counts_unfinished_queries_and_open_transactions_with_the_oldest_of_each(store_url):
    async def scenario(store: Store) -> dict[str, BackendWork]:
        await store.record_queries(
            [
                record("q1", 1_000, backend_name="trino-1"),
                record("q2", 2_000, backend_name="trino-1"),
                record("q3", 3_000, backend_name="trino-2"),
                record("q4", 500, backend_name="trino-3"),
            ]
        )
        await store.finish_queries(
            [QueryOutcome("q3", "FINISHED", None, 3_100), QueryOutcome("q4", "FAILED", "X", 600)]
        )
        await store.bind_transaction(binding("t1", "trino-2", 2_500))
        await store.bind_transaction(binding("t2", "trino-2", 1_500))
        await store.bind_transaction(binding("t3", "trino-1", 700))
        await store.end_transactions("committed", 4_000, ids=["t3"])
        return await store.backend_work()

    assert on_store(store_url, scenario) == {
        "trino-1": BackendWork(unfinished_queries=2, oldest_query_at=1_000),
        "trino-2": BackendWork(open_transactions=2, oldest_transaction_at=1_500),
    }


# -- one health check per backend, and the fleet's routing rules --------------------------------
def test_a_health_check_lease_has_one_holder_until_it_runs_out_or_is_released(store_url):
    async def scenario(store: Store) -> None:
        assert await store.claim_health_check("trino-1", "w1", now_ms=1_000, until_ms=2_000) is True
        assert await store.claim_health_check("trino-1", "w2", now_ms=1_500, until_ms=2_500) is False
        assert await store.claim_health_check("trino-1", "w2", now_ms=2_000, until_ms=3_000) is False  # until counts
        assert await store.claim_health_check("trino-1", "w1", now_ms=1_900, until_ms=2_900) is True  # renewed
        assert await store.claim_health_check("trino-2", "w2", now_ms=1_900, until_ms=2_900) is True
        assert await store.claim_health_check("trino-1", "w2", now_ms=2_901, until_ms=3_900) is True  # ran out
        assert await store.claim_health_check("trino-1", "w1", now_ms=3_000, until_ms=4_000) is False
        await store.release_health_checks("w2")  # both of w2's leases end now
        assert await store.claim_health_check("trino-1", "w1", now_ms=3_000, until_ms=4_000) is True
        assert await store.claim_health_check("trino-2", "w1", now_ms=3_000, until_ms=4_000) is True

    on_store(store_url, scenario)


def test_only_the_lease_holder_publishes_a_check_and_every_reader_gets_the_latest(store_url):
    ok = SharedCheck("trino-1", 1_000, "ok", None, {"running": 3, "queued": 0, "uptime": 12.5, "workers": None}, 0.02)
    failed = SharedCheck("trino-1", 2_000, "failed", "connection refused", None, 1.0)

    async def scenario(store: Store) -> None:
        assert await store.health_checks() == {}
        await store.claim_health_check("trino-1", "w1", now_ms=500, until_ms=5_000)
        await store.publish_health_check("w1", ok)
        await store.publish_health_check("w2", failed)  # not the holder: ignored
        assert await store.health_checks() == {"trino-1": ok}
        await store.publish_health_check("w1", failed)
        assert await store.health_checks() == {"trino-1": failed}

    on_store(store_url, scenario)


def test_the_routing_rules_are_none_until_put_and_the_last_put_stands(store_url):
    async def scenario(store: Store) -> None:
        assert await store.get_routing_rules() is None
        await store.put_routing_rules(SharedRulesText("first", 1_000, "alice"))
        second = SharedRulesText("---\nname: etl\ncondition: 'true'\n", 2_000, "bob")
        await store.put_routing_rules(second)
        assert await store.get_routing_rules() == second

    on_store(store_url, scenario)


# -- cluster management: what the cluster manager did, and leases by name ---------------------------
NO_RECORD: frozenset[str | None] = frozenset({None})
STOPPED: frozenset[str | None] = frozenset({"STOPPED"})


def test_a_cluster_moves_only_from_an_expected_state_and_is_forgotten_with_its_backend(store_url):
    starting = ClusterRecord("trino-etl", "STARTING", 1_000, "started by the autoscaler: 3 queries waiting", None, 1)
    failed = ClusterRecord("trino-etl", "STOPPED", 2_000, "start failed: exit 1", failed_ms=2_000, starts=1)

    async def scenario(store: Store) -> None:
        assert await store.cluster_records() == {}
        # None expected: no record yet.
        assert await store.move_cluster(starting, NO_RECORD | STOPPED) is True
        assert await store.move_cluster(starting, NO_RECORD) is False  # it has one now
        assert await store.move_cluster(failed, frozenset({"READY"})) is False
        assert await store.cluster_records() == {"trino-etl": starting}
        assert await store.move_cluster(failed, frozenset({"STARTING", "READY"})) is True
        assert await store.cluster_records() == {"trino-etl": failed}
        # None as expected: whatever it is, or whether it has a record at all.
        ready = ClusterRecord("trino-2", "READY", 3_000)
        assert await store.move_cluster(ready, None) is True
        forced = dataclasses.replace(failed, state="TERMINATING", since_ms=3_500, detail=None)
        assert await store.move_cluster(forced, None) is True
        assert await store.cluster_records() == {"trino-etl": forced, "trino-2": ready}
        # Nothing expected: nothing matches.
        assert await store.move_cluster(ready, frozenset()) is False
        await store.forget_cluster("trino-etl")
        await store.forget_cluster("nobody")
        assert await store.cluster_records() == {"trino-2": ready}
        assert await store.move_cluster(starting, NO_RECORD) is True  # as new again
        # A long detail is cut alike by every store.
        wordy = dataclasses.replace(ready, detail="x" * (CLUSTER_DETAIL_LENGTH + 100))
        assert await store.move_cluster(wordy, frozenset({"READY"})) is True
        assert (await store.cluster_records())["trino-2"].detail == "x" * CLUSTER_DETAIL_LENGTH

    on_store(store_url, scenario)


def test_of_two_moves_of_one_cluster_at_once_exactly_one_succeeds(store_url):
    async def scenario(store: Store) -> list[list[bool]]:
        outcomes = []
        for n in range(10):
            # From no record (the first start), then from the state the winner left (the next move).
            for expected, state in ((NO_RECORD | STOPPED, "STARTING"), (frozenset({"STARTING"}), "READY")):
                mine, theirs = (ClusterRecord(f"trino-{n}", state, 1_000, node) for node in ("n1", "n2"))
                moves = store.move_cluster(mine, expected), store.move_cluster(theirs, expected)
                outcomes.append(sorted(await asyncio.gather(*moves)))
        records = await store.cluster_records()
        assert sorted(records) == [f"trino-{n}" for n in range(10)]
        assert {r.state for r in records.values()} == {"READY"}
        return outcomes

    assert on_store(store_url, scenario) == [[False, True]] * 20


def test_a_lease_by_name_has_one_holder_until_it_runs_out_or_is_released(store_url):
    async def scenario(store: Store) -> None:
        assert await store.claim_lease("autoscale:etl", "n1", now_ms=1_000, until_ms=2_000) is True
        assert await store.claim_lease("autoscale:etl", "n2", now_ms=1_500, until_ms=2_500) is False
        assert await store.claim_lease("autoscale:etl", "n2", now_ms=2_000, until_ms=3_000) is False  # until counts
        assert await store.claim_lease("autoscale:etl", "n1", now_ms=1_900, until_ms=2_900) is True  # renewed
        assert await store.claim_lease("autoscale:adhoc", "n2", now_ms=1_900, until_ms=2_900) is True
        assert await store.claim_lease("autoscale:etl", "n2", now_ms=2_901, until_ms=3_900) is True  # ran out
        assert await store.claim_lease("autoscale:etl", "n1", now_ms=3_000, until_ms=4_000) is False
        await store.release_lease("autoscale:etl", "n1")  # not n1's: nothing happens
        assert await store.claim_lease("autoscale:etl", "n1", now_ms=3_000, until_ms=4_000) is False
        await store.release_lease("autoscale:etl", "n2")
        assert await store.claim_lease("autoscale:etl", "n1", now_ms=3_000, until_ms=4_000) is True
        # Only that lease ended; and the health checks' leases are others.
        assert await store.claim_lease("autoscale:adhoc", "n1", now_ms=2_000, until_ms=4_000) is False
        assert await store.claim_health_check("autoscale:etl", "n2", now_ms=3_000, until_ms=4_000) is True
        await store.release_health_checks("n1")
        assert await store.claim_lease("autoscale:etl", "n2", now_ms=3_000, until_ms=4_000) is False

    on_store(store_url, scenario)


# -- the result cache's shared tier ---------------------------------------------------------------
def cached(
    n: int, group: str = "adhoc", created_ms: int = 1_000, expires_ms: int = 10_000, size: int = 256
) -> CachedResult:
    return CachedResult(
        f"{n:064x}", group, created_ms, expires_ms, bytes(range(256)) * (size // 256) + bytes(size % 256)
    )


def test_cached_results_are_kept_replaced_by_key_and_none_once_expired(lasting_store_url):
    large = cached(3, size=3 * 1024 * 1024 + 7)

    async def scenario(store: Store) -> None:
        assert await store.cached_result_totals() == (0, 0)
        assert await store.get_cached_result(cached(1).key, 1_000) is None
        await store.put_cached_result(cached(1, expires_ms=5_000))
        await store.put_cached_result(cached(2))
        await store.put_cached_result(large)
        assert await store.get_cached_result(cached(1).key, 4_999) == cached(1, expires_ms=5_000)
        assert await store.get_cached_result(large.key, 1_000) == large
        assert await store.cached_result_totals() == (3, 256 + 256 + len(large.blob))
        # Expired from expires_ms on: not returned, then deleted (and no longer counted).
        assert await store.get_cached_result(cached(1).key, 5_000) is None
        assert await store.expire_cached_results(5_000) == 1
        assert await store.cached_result_totals() == (2, 256 + len(large.blob))
        # Put again under its key: replaced, counted once.
        replacement = cached(3, group="etl", created_ms=6_000, expires_ms=20_000, size=10)
        await store.put_cached_result(replacement)
        assert await store.get_cached_result(large.key, 6_000) == replacement
        assert await store.cached_result_totals() == (2, 256 + 10)
        assert await store.expire_cached_results(10_000) == 1  # cached(2) expires at 10_000
        assert await store.expire_cached_results(10_000) == 0

    on_store(lasting_store_url, scenario)


def test_purging_cached_results_deletes_all_or_a_groups_and_marks_when(lasting_store_url):
    async def scenario(store: Store) -> None:
        for n, group in ((1, "adhoc"), (2, "etl"), (3, "etl"), (4, "adhoc")):
            await store.put_cached_result(cached(n, group))
        assert await store.purge_cached_results("etl", 2_000) == 2
        assert await store.get_cached_result(cached(2).key, 2_000) is None
        assert await store.get_cached_result(cached(1).key, 2_000) == cached(1, "adhoc")
        assert await store.cached_result_totals() == (2, 512)
        assert await store.purge_cached_results("nobody", 2_500) == 0
        assert await store.purge_cached_results(None, 3_000) == 2
        assert await store.cached_result_totals() == (0, 0)
        assert await store.cache_purge_marks() == {"etl": 2_000, "nobody": 2_500, "*": 3_000}

    on_store(lasting_store_url, scenario)


def test_every_store_marks_each_purge_of_cached_results_the_last_one_standing(store_url):
    """The marks tell other workers' own tiers of a purge: kept by every store, the in-memory one too."""

    async def scenario(store: Store) -> dict[str, int]:
        assert await store.cache_purge_marks() == {}
        await store.purge_cached_results("etl", 1_000)
        await store.purge_cached_results(None, 2_000)
        await store.purge_cached_results("etl", 3_000)
        return await store.cache_purge_marks()

    assert on_store(store_url, scenario) == {"etl": 3_000, "*": 2_000}


def test_the_memory_store_keeps_no_cached_results(store_url):
    """With memory:// one worker's own tiers hold its entries: the store's tier is a documented no-op."""
    if not store_url.startswith("memory:"):
        pytest.skip("the SQL stores keep cached results")

    async def scenario(store: Store) -> None:
        await store.put_cached_result(cached(1))
        assert await store.get_cached_result(cached(1).key, 1_000) is None
        assert await store.cached_result_totals() == (0, 0)
        assert await store.expire_cached_results(20_000) == 0
        assert await store.purge_cached_results(None, 2_000) == 0

    on_store(store_url, scenario)


# -- what a SQL store shares ----------------------------------------------------------------------
def test_two_stores_on_one_url_see_each_others_writes(lasting_store_url):
    async def scenario() -> None:
        first, second = await open_store(lasting_store_url), await open_store(lasting_store_url)
        try:
            await first.add_backend(PLAIN)
            await first.record_queries([record("q1", 1_000)])
            await first.bind_transaction(binding("t1", "trino-1", 1_000))
            await first.put_routing_rules(SharedRulesText("rules", 1_000, "alice"))
            assert await second.get_backend("trino-1") == PLAIN
            assert await second.get_query("q1") == record("q1", 1_000)
            assert await second.get_transaction("t1") == binding("t1", "trino-1", 1_000)
            assert await second.get_routing_rules() == SharedRulesText("rules", 1_000, "alice")
            assert await first.claim_health_check("trino-1", "w1", now_ms=1_000, until_ms=9_000) is True
            assert await second.claim_health_check("trino-1", "w2", now_ms=1_000, until_ms=9_000) is False
        finally:
            await first.close()
            await second.close()

    asyncio.run(scenario())


def test_two_stores_on_one_url_racing_for_a_cluster_or_a_lease_each_time_one_wins(lasting_store_url):
    async def scenario() -> None:
        first, second = await open_store(lasting_store_url), await open_store(lasting_store_url)
        try:
            for n in range(10):
                mine, theirs = (ClusterRecord(f"trino-{n}", "STARTING", 1_000, node) for node in ("n1", "n2"))
                won = await asyncio.gather(
                    first.move_cluster(mine, NO_RECORD | STOPPED), second.move_cluster(theirs, NO_RECORD | STOPPED)
                )
                assert sorted(won) == [False, True], n
                winner = "n1" if won[0] else "n2"
                assert (await second.cluster_records())[f"trino-{n}"].detail == winner
                assert (await first.cluster_records())[f"trino-{n}"].detail == winner
                held = await asyncio.gather(
                    first.claim_lease(f"group-{n}", "n1", now_ms=1_000, until_ms=9_000),
                    second.claim_lease(f"group-{n}", "n2", now_ms=1_000, until_ms=9_000),
                )
                assert sorted(held) == [False, True], n
                # Taken over once it ran out: again by exactly one.
                taken = await asyncio.gather(
                    first.claim_lease(f"group-{n}", "n3", now_ms=9_001, until_ms=19_000),
                    second.claim_lease(f"group-{n}", "n4", now_ms=9_001, until_ms=19_000),
                )
                assert sorted(taken) == [False, True], n
        finally:
            await first.close()
            await second.close()

    asyncio.run(scenario())


def test_changes_are_told_to_every_listener_on_postgresql_and_elsewhere_watching_returns_at_once(store_url):
    """On PostgreSQL a change by any store on the URL reaches the others' ``watch_changes`` (NOTIFY);
    in memory and on SQLite nobody is told, and readers poll."""

    async def scenario() -> list[str]:
        watcher, changer = await open_store(store_url), await open_store(store_url)
        heard: list[str] = []
        try:
            watching = asyncio.create_task(watcher.watch_changes(heard.append))
            if not store_url.startswith("postgresql"):
                await asyncio.wait_for(watching, 10)
                return heard
            await _until(lambda: ANYTHING_CHANGED in heard)
            await changer.add_backend(PLAIN)
            await _until(lambda: BACKENDS_CHANGED in heard)
            await changer.put_routing_rules(SharedRulesText("rules", 1_000, "alice"))
            await _until(lambda: RULES_CHANGED in heard)
            watching.cancel()
            with pytest.raises(asyncio.CancelledError):
                await watching
            return heard
        finally:
            await watcher.close()
            await changer.close()

    heard = asyncio.run(scenario())
    if store_url.startswith("postgresql"):
        assert heard == [ANYTHING_CHANGED, BACKENDS_CHANGED, RULES_CHANGED]
    else:
        assert heard == []


def test_two_stores_on_one_url_share_cached_results_and_purge_marks(lasting_store_url):
    async def scenario() -> None:
        first, second = await open_store(lasting_store_url), await open_store(lasting_store_url)
        try:
            await first.put_cached_result(cached(1, "etl"))
            assert await second.get_cached_result(cached(1).key, 2_000) == cached(1, "etl")
            await second.put_cached_result(cached(1, "etl", created_ms=1_500))
            assert await first.get_cached_result(cached(1).key, 2_000) == cached(1, "etl", created_ms=1_500)
            assert await second.purge_cached_results("etl", 3_000) == 1
            assert await first.get_cached_result(cached(1).key, 3_000) is None
            assert await first.cache_purge_marks() == {"etl": 3_000}
            assert await first.cached_result_totals() == (0, 0)
        finally:
            await first.close()
            await second.close()

    asyncio.run(scenario())


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)
