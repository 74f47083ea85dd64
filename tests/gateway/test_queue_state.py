"""The queue's state keeps the same promises in memory, on SQLite and on PostgreSQL: admission control
is one algorithm over it (``gateway.queries.admission``), so a behaviour that differed by store would be
a bug. Each case runs on all three."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config import AdmissionConfig, GroupConfig, HealthConfig, RoutingConfig
from gateway.queries.admission import Admission, Admitted, MemoryQueueState, QueueState, SqlQueueState
from gateway.queries.admission.state import WaitingRow
from gateway.queries.held import HeldQuery, WaitingQueries
from gateway.queries.states import ADMITTED, CANCELED, FAILED, QUEUED, SENDING, STARTED
from gateway.queries.submission import Submission
from gateway.routing.decider import RouteDecider
from gateway.store import SqlStore, now_ms
from gateway.store.backend import Backend
from tests.postgres import PostgresServer

GROUP = "adhoc"


@pytest.fixture(scope="module")
def queue_postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


StateTest = Callable[[QueueState], Awaitable[None]]


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def on_each_state(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[StateTest], None]:
    """Runs a test coroutine over a fresh queue state of the parametrised kind."""

    def run(test: StateTest) -> None:
        async def main() -> None:
            if request.param == "memory":
                await test(MemoryQueueState())
                return
            if request.param == "sqlite":
                url = f"sqlite:///{tmp_path / 'gateway.db'}"
            else:
                postgres = request.getfixturevalue("queue_postgres")
                postgres.reset()
                url = postgres.url()
            store = await SqlStore.open(url)
            try:
                await test(SqlQueueState(store.engine))
            finally:
                await store.close()

        asyncio.run(main())

    return run


def _submission(user: str, source: str | None = None) -> Submission:
    return Submission(b"SELECT 1", user, source, None, None, GROUP, "default", None, b"", failover=True)


def _row(query_id: str, user: str, place: int, **changes: Any) -> WaitingRow:
    now = now_ms()
    row = WaitingRow(
        query_id=query_id,
        slug="secret",
        routing_group=GROUP,
        party=user,
        user_name=user,
        weight=1.0,
        user_limit=None,
        state=QUEUED,
        backend_name=None,
        token=1,
        enqueued_at=place,
        place=place,
        deadline_at=None,
        max_queue_wait=None,
        queued_ms=0,
        last_seen_at=now,
        submission=_submission(user),
    )
    for name, value in changes.items():
        setattr(row, name, value)
    return row


def _backends(max_running: int = 1, count: int = 1) -> tuple[list[Backend], RouteDecider]:
    from gateway.backends.health import HealthChecker

    backends = [
        Backend(name=f"b{n}", proxy_to=f"http://127.0.0.1:{9000 + n}", routing_group=GROUP, max_running=max_running)
        for n in range(count)
    ]
    health = HealthChecker(None, None, HealthConfig(monitor="NOOP"))  # type: ignore[arg-type]
    for backend in backends:
        health.of(backend.name).succeeded(None)
    return backends, RouteDecider(RoutingConfig(), health, lambda name: 0)


def _admission(state: QueueState, max_running: int = 1, count: int = 1, **settings: Any) -> Admission:
    backends, decider = _backends(max_running, count)
    config = AdmissionConfig(**settings)
    groups = {GROUP: GroupConfig()}
    admission = Admission(config, groups, decider, state, WaitingQueries(config.abandon_after), False)  # type: ignore[arg-type]
    admission.refresh(backends)
    return admission


# -- the state itself ---------------------------------------------------------------------------------
def test_a_decision_reads_each_partys_first_waiting_queries_in_line(on_each_state):
    async def test(state: QueueState) -> None:
        async with state.decide(GROUP) as decision:
            for query_id, user, place in (("a1", "alice", 10), ("b1", "bob", 11), ("a2", "alice", 12)):
                await decision.add(_row(query_id, user, place))
            # Sent again after its backend failed: a place before everyone else's.
            await decision.add(_row("a0", "alice", 5, enqueued_at=20, attempts="b9: connection refused"))
            assert await decision.count_waiting() == 4
            assert await decision.first_place() == 5
        async with state.decide(GROUP) as decision:
            line = await decision.line(per_party=1)
            picked = [line.pick(lambda head: True) for _ in range(2)]
            assert sorted(head.query_id for head in picked) == ["a0", "b1"]
            assert next(head for head in picked if head.query_id == "a0").excluded == {"b9"}
            await decision.close(None, changed=False)
        assert sorted(await state.groups_waiting()) == [GROUP]

    on_each_state(test)


def test_admitting_takes_a_slot_that_counts_until_released_by_its_id_or_its_querys(on_each_state):
    async def test(state: QueueState) -> None:
        now = now_ms()
        async with state.decide(GROUP) as decision:
            await decision.add(_row("w1", "alice", 1))
            line = await decision.line(per_party=1)
            head = line.pick(lambda head: True)
            await decision.admit(head, "b0", "slot-w1", now + 60_000, 5)
            await decision.take("slot-new", "b0", "bob", now + 60_000)
            running, per_user = await decision.running(now)
            assert running == {"b0": 2} and per_user == {"alice": 1, "bob": 1}
            await decision.close(line, changed=True)
        row = await state.get("w1")
        assert row is not None and (row.state, row.backend_name, row.slot_id) == (ADMITTED, "b0", "slot-w1")
        assert (await state.counts(now))[1] == {"b0": 2}
        await state.bind("slot-new", "20261206_000000_00001_abcde")
        assert await state.release(query_id="20261206_000000_00001_abcde") == 1
        assert await state.release(slot_id="slot-w1") == 1
        assert await state.release(slot_id="slot-w1") == 0  # once
        assert (await state.counts(now))[1] == {}

    on_each_state(test)


def test_a_waiting_query_that_ends_frees_its_slot_and_changes_only_from_the_state_it_was_in(on_each_state):
    async def test(state: QueueState) -> None:
        now = now_ms()
        async with state.decide(GROUP) as decision:
            await decision.add(_row("w1", "alice", 1))
            head = (await decision.line(per_party=1)).pick(lambda head: True)
            await decision.admit(head, "b0", "slot-w1", now + 60_000, 0)
        # Two workers claim it to send it: one does.
        assert await state.update("w1", only_from=(ADMITTED,), state=SENDING)
        assert not await state.update("w1", only_from=(ADMITTED,), state=SENDING)
        assert (await state.counts(now))[1] == {"b0": 1}
        assert await state.update("w1", only_from=(QUEUED, ADMITTED, SENDING), state=CANCELED, error_name="X")
        row = await state.get("w1")
        assert row is not None and (row.state, row.error_name) == (CANCELED, "X")
        assert (await state.counts(now))[1] == {}
        assert not await state.update("w1", only_from=(QUEUED,), state=FAILED)

    on_each_state(test)


def test_a_slot_whose_lease_ran_out_stops_counting_unless_renewed(on_each_state):
    async def test(state: QueueState) -> None:
        now = now_ms()
        await state.take("gone", "b0", "alice", now - 1)
        await state.take("polled", "b0", "bob", now + 50)
        await state.bind("polled", "q-polled")
        await state.renew(["q-polled"], [], now, now + 60_000)
        assert (await state.counts(now + 1_000))[1] == {"b0": 1}
        await state.purge(now, now + 1_000)
        assert await state.release(slot_id="gone") == 0  # purged
        assert await state.release(slot_id="polled") == 1

    on_each_state(test)


def test_counts_are_per_group_and_user_and_purge_forgets_only_what_ended_long_ago(on_each_state):
    async def test(state: QueueState) -> None:
        now = now_ms()
        async with state.decide(GROUP) as decision:
            for query_id, user in (("w1", "alice"), ("w2", "alice"), ("w3", "bob"), ("w4", "carol")):
                await decision.add(_row(query_id, user, now))
        await state.update("w4", state=CANCELED, last_seen_at=now - 10_000)
        await state.update("w3", state=FAILED, last_seen_at=now)
        assert (await state.counts(now))[0] == {(GROUP, "alice"): 2}
        await state.purge(now - 5_000, now)
        assert await state.get("w4") is None
        assert (await state.get("w3")) is not None and (await state.get("w1")) is not None
        rows = await state.rows(["w1", "w2", "w4"])
        assert sorted(rows) == ["w1", "w2"]

    on_each_state(test)


# -- the one algorithm over it ---------------------------------------------------------------------
def test_turns_are_kept_between_decisions_so_users_alternate(on_each_state):
    async def test(state: QueueState) -> None:
        admission = _admission(state, max_running=1)
        backend = admission.backends[0]
        blocker = await admission.admit(admission.backends, _submission("runner"))
        assert isinstance(blocker, Admitted) and blocker.slot is not None
        waiting = [await admission.admit(admission.backends, _submission(user)) for user in ["alice"] * 3 + ["bob"] * 3]
        assert all(isinstance(held, HeldQuery) for held in waiting)
        order: list[str | None] = []
        slot_id = blocker.slot.slot_id
        for _ in range(6):
            # A running query ends; one decision later, one waiting query holds its slot.
            await state.release(slot_id=slot_id)
            await admission._dispatch_group(GROUP, now_ms(), housekeeping=False)
            admitted = [held for held in admission.waiting if held.state == ADMITTED]
            assert len(admitted) == 1 and admitted[0].backend == backend
            held = admitted[0]
            assert held.slot is not None and held.slot.slot_id is not None
            order.append(held.user)
            slot_id = held.slot.slot_id
            held.state, held.slot = STARTED, None  # sent: its slot is its query's now
            await state.update(held.id, state=STARTED)
        assert order in (["alice", "bob"] * 3, ["bob", "alice"] * 3)

    on_each_state(test)


def test_the_expiry_rule_fails_a_query_past_its_wait_and_cancels_one_nobody_polls(on_each_state):
    async def test(state: QueueState) -> None:
        admission = _admission(state, max_running=1, abandon_after=1.0)
        admission.groups = {GROUP: GroupConfig(max_queue_wait=0.01)}
        await admission.admit(admission.backends, _submission("runner"))
        late = await admission.admit(admission.backends, _submission("alice"))
        assert isinstance(late, HeldQuery)
        admission.groups = {GROUP: GroupConfig()}
        forgotten = await admission.admit(admission.backends, _submission("bob"))
        assert isinstance(forgotten, HeldQuery)
        await state.update(forgotten.id, last_seen_at=now_ms() - 5_000)
        await asyncio.sleep(0.05)
        await admission._dispatch_group(GROUP, now_ms(), housekeeping=True)
        rows = await state.rows([late.id, forgotten.id])
        assert (rows[late.id].state, rows[late.id].error_name) == (FAILED, "EXCEEDED_TIME_LIMIT")
        assert rows[late.id].error_message == "Query exceeded maximum queued time limit of 10.00ms"
        assert (rows[forgotten.id].state, rows[forgotten.id].error_name) == (CANCELED, "ABANDONED")
        # This worker's copies heard of it at once.
        assert (late.state, forgotten.state) == (FAILED, CANCELED)

    on_each_state(test)


def test_a_query_sent_before_fails_when_its_group_has_no_backend_left_while_new_ones_wait(on_each_state):
    async def test(state: QueueState) -> None:
        admission = _admission(state, max_running=1)
        await admission.admit(admission.backends, _submission("runner"))
        new = await admission.admit(admission.backends, _submission("alice"))
        again = HeldQuery(_submission("bob"))
        again.failed_on("b9", "connection refused")
        await admission.requeue(again, admission.backends)
        assert isinstance(new, HeldQuery) and again.state == QUEUED
        admission.refresh([])  # every backend gone
        await admission._dispatch_group(GROUP, now_ms(), housekeeping=False)
        rows = await state.rows([new.id, again.id])
        assert rows[new.id].state == QUEUED
        assert (rows[again.id].state, rows[again.id].error_name) == (FAILED, "NO_NODES_AVAILABLE")
        assert "after failing on b9: connection refused" in (rows[again.id].error_message or "")

    on_each_state(test)
