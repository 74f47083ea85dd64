"""The queue's state in the SQL store (SQLite or PostgreSQL; tables of migrations 0011 and 0012), shared
by every worker and node on it.

A decision (``decide``) is one transaction holding its group's lock until it ends: PostgreSQL's
advisory transaction lock; on SQLite, ``BEGIN IMMEDIATE`` (the database's write lock, which every
worker process of a node on one file takes in turn). Everything else is one statement, safe without
the lock: a state changes only from the state the caller saw.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.queries.admission.fair_queue import FairQueue
from gateway.queries.admission.state import COLUMNS, Counts, Head, QueuedHead, WaitingRow
from gateway.queries.states import ADMITTED, ENDED, IN_QUEUE, QUEUED
from gateway.queries.submission import Submission
from gateway.store.records import ADMISSION_CHANGED
from gateway.store.schema import admission_slots, fair_turns, waiting_queries
from gateway.store.sql import CHANGES_CHANNEL

# The advisory-lock keys of admission control: this number in the high half, the group's CRC in the low.
_LOCK_SPACE = 0x61646D69 << 32
_HEAD_COLUMNS = ["query_id", "party", "user_name", "weight", "user_limit", "enqueued_at", "attempts"]
_table = waiting_queries.c


def group_lock_key(group: str) -> int:
    """The key of ``group``'s advisory lock (PostgreSQL's bigint: the high bit makes it negative)."""
    return (_LOCK_SPACE | zlib.crc32(group.encode())) - (1 << 63)


def _row(row: sa.Row[Any]) -> WaitingRow:
    values = {name: getattr(row, name) for name in COLUMNS}
    values["submission"] = Submission.from_json(values["submission"])
    return WaitingRow(**values)


def _values(row: WaitingRow) -> dict[str, Any]:
    values = {name: getattr(row, name) for name in COLUMNS}
    values["submission"] = row.submission.to_json()
    return values


class SqlDecision:
    """What one decision reads and writes, in one transaction under its group's lock."""

    def __init__(self, connection: AsyncConnection, group: str, fifo: bool) -> None:
        self.connection = connection
        self.group = group
        self.fifo = fifo
        self._running: tuple[Counts, Counts] | None = None

    async def overdue(self, now_ms: int, unseen_before_ms: int) -> list[WaitingRow]:
        # The rows ``state.overdue`` may end: past their deadline, or not seen lately.
        rows = await self.connection.execute(
            sa.select(waiting_queries).where(
                _table.routing_group == self.group,
                sa.or_(
                    sa.and_(_table.state == QUEUED, _table.deadline_at <= now_ms),
                    sa.and_(_table.state.in_((QUEUED, ADMITTED)), _table.last_seen_at < unseen_before_ms),
                ),
            )
        )
        return [_row(row) for row in rows]

    async def sent_before(self) -> list[WaitingRow]:
        rows = await self.connection.execute(
            sa.select(waiting_queries).where(
                _table.routing_group == self.group, _table.state == QUEUED, _table.attempts.is_not(None)
            )
        )
        return [_row(row) for row in rows]

    async def end(self, row: WaitingRow, state: str, error_name: str | None, message: str | None) -> None:
        await self.connection.execute(
            sa.update(waiting_queries)
            .where(_table.query_id == row.query_id)
            .values(state=state, error_name=error_name, error_message=message)
        )
        await _free_slot_of(self.connection, row.query_id)

    async def running(self, now_ms: int) -> tuple[Counts, Counts]:
        if self._running is None:
            slots = admission_slots.c
            per_backend: Counts = {}
            per_user: Counts = {}
            rows = await self.connection.execute(
                sa.select(slots.backend_name, slots.user_name, sa.func.count())
                .where(slots.lease_until >= now_ms)
                .group_by(slots.backend_name, slots.user_name)
            )
            for backend, user, count in rows:
                per_backend[backend] = per_backend.get(backend, 0) + count
                per_user[user] = per_user.get(user, 0) + count
            self._running = per_backend, per_user
        return self._running

    async def line(self, per_party: int) -> FairQueue[Any]:
        queue: FairQueue[QueuedHead] = FairQueue(fifo=self.fifo)
        turns = await self.connection.scalar(
            sa.select(fair_turns.c.turns).where(fair_turns.c.routing_group == self.group)
        )
        if turns:
            queue.restore(orjson.loads(turns))
        for head in await self._heads(per_party):
            queue.push(head)
        return queue

    async def _heads(self, per_party: int) -> list[QueuedHead]:
        """The group's first ``per_party`` waiting queries of each party, in line: no decision can start
        more than that many of one party, however many wait."""
        if self.connection.dialect.name == "postgresql":
            # A loose index scan of the waiting queries' index: a probe per party for the next party,
            # one for its first queries. 10,000 waiting of 5 parties cost 10 probes, not 10,000 rows.
            rows = await self.connection.execute(_FIRSTS_OF_EACH_PARTY, {"group": self.group, "per_party": per_party})
        elif per_party == 1:
            # The same loose scan on SQLite (no LATERAL): for the usual decision, a slot freed.
            rows = await self.connection.execute(_FIRST_OF_EACH_PARTY_SQLITE, {"group": self.group})
        else:
            order = (_table.place, _table.query_id)
            place = sa.func.row_number().over(partition_by=_table.party, order_by=order).label("place_in_party")
            firsts = (
                sa.select(*(_table[name] for name in _HEAD_COLUMNS), _table.place, place)
                .where(_table.routing_group == self.group, _table.state == QUEUED)
                .subquery()
            )
            rows = await self.connection.execute(
                sa.select(*(firsts.c[name] for name in _HEAD_COLUMNS), firsts.c.place)
                .where(firsts.c.place_in_party <= per_party)
                .order_by(firsts.c.place, firsts.c.query_id)
            )
        return [QueuedHead(*row[:-1]) for row in sorted(rows, key=lambda row: (row[-1], row[0]))]

    async def admit(self, head: Head, backend: str, slot_id: str, lease_until: int, queued_ms: int) -> None:
        await self.connection.execute(
            sa.update(waiting_queries)
            .where(_table.query_id == head.query_id)
            .values(state=ADMITTED, backend_name=backend, queued_ms=queued_ms, slot_id=slot_id)
        )
        await self.take(slot_id, backend, head.user_name or "", lease_until)

    async def take(self, slot_id: str, backend: str, user: str, lease_until: int) -> None:
        await self.connection.execute(
            sa.insert(admission_slots).values(
                slot_id=slot_id, backend_name=backend, user_name=user, lease_until=lease_until
            )
        )
        if self._running is not None:
            per_backend, per_user = self._running
            per_backend[backend] = per_backend.get(backend, 0) + 1
            per_user[user] = per_user.get(user, 0) + 1

    async def add(self, row: WaitingRow) -> None:
        await self.connection.execute(sa.delete(waiting_queries).where(_table.query_id == row.query_id))
        await self.connection.execute(sa.insert(waiting_queries).values(**_values(row)))

    async def count_waiting(self) -> int:
        count = await self.connection.scalar(
            sa.select(sa.func.count()).where(_table.routing_group == self.group, _table.state == QUEUED)
        )
        return int(count or 0)

    async def first_place(self) -> int | None:
        return await self.connection.scalar(
            sa.select(sa.func.min(_table.place)).where(_table.routing_group == self.group, _table.state == QUEUED)
        )

    async def close(self, line: FairQueue[Any] | None, changed: bool) -> None:
        if line is not None:
            turns = orjson.dumps(line.turns()).decode()
            updated = await self.connection.execute(
                sa.update(fair_turns).where(fair_turns.c.routing_group == self.group).values(turns=turns)
            )
            if updated.rowcount == 0:
                await self.connection.execute(sa.insert(fair_turns).values(routing_group=self.group, turns=turns))
        if changed:
            await _announce(self.connection)


_FIRSTS_OF_EACH_PARTY = sa.text(
    """
    WITH RECURSIVE parties(party) AS (
        (SELECT party FROM gateway_waiting_query
          WHERE routing_group = :group AND state = 'QUEUED' ORDER BY party LIMIT 1)
        UNION ALL
        SELECT (SELECT w.party FROM gateway_waiting_query w
                 WHERE w.routing_group = :group AND w.state = 'QUEUED' AND w.party > p.party
                 ORDER BY w.party LIMIT 1)
          FROM parties p WHERE p.party IS NOT NULL
    )
    SELECT firsts.* FROM parties p
      CROSS JOIN LATERAL (
        SELECT w.query_id, w.party, w.user_name, w.weight, w.user_limit, w.enqueued_at, w.attempts, w.place
          FROM gateway_waiting_query w
         WHERE w.routing_group = :group AND w.state = 'QUEUED' AND w.party = p.party
         ORDER BY w.place, w.query_id LIMIT :per_party
      ) AS firsts
     WHERE p.party IS NOT NULL
    """
)


_FIRST_OF_EACH_PARTY_SQLITE = sa.text(
    """
    WITH RECURSIVE parties(party) AS (
        SELECT min(party) FROM gateway_waiting_query WHERE routing_group = :group AND state = 'QUEUED'
        UNION ALL
        SELECT (SELECT min(w.party) FROM gateway_waiting_query w
                 WHERE w.routing_group = :group AND w.state = 'QUEUED' AND w.party > p.party)
          FROM parties p WHERE p.party IS NOT NULL
    )
    SELECT w.query_id, w.party, w.user_name, w.weight, w.user_limit, w.enqueued_at, w.attempts, w.place
      FROM parties p JOIN gateway_waiting_query w ON w.query_id = (
           SELECT f.query_id FROM gateway_waiting_query f
            WHERE f.routing_group = :group AND f.state = 'QUEUED' AND f.party = p.party
            ORDER BY f.place, f.query_id LIMIT 1)
     WHERE p.party IS NOT NULL
    """
)


async def _free_slot_of(connection: AsyncConnection, query_id: str) -> None:
    """The slot a waiting query holds (if it was admitted) is freed: it ended before a backend took it."""
    held = sa.select(_table.slot_id).where(_table.query_id == query_id).scalar_subquery()
    await connection.execute(sa.delete(admission_slots).where(admission_slots.c.slot_id == held))


async def _announce(connection: AsyncConnection) -> None:
    """Every node hears of the decision when it commits (a client of theirs may now start)."""
    if connection.dialect.name == "postgresql":
        await connection.execute(sa.select(sa.func.pg_notify(CHANGES_CHANNEL, ADMISSION_CHANGED)))


class SqlQueueState:
    shared = True

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"

    @contextlib.asynccontextmanager
    async def decide(self, group: str, fifo: bool = False) -> AsyncIterator[SqlDecision]:
        if self.postgres:
            async with self.engine.begin() as connection:
                await connection.execute(sa.select(sa.func.pg_advisory_xact_lock(group_lock_key(group))))
                yield SqlDecision(connection, group, fifo)
            return
        async with self.engine.connect() as connection:
            # The write lock at once: a decision that read under a shared lock could not upgrade it
            # while another worker's decision holds it (SQLite answers "database is locked").
            await connection.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield SqlDecision(connection, group, fifo)
            except BaseException:
                await connection.rollback()
                raise
            await connection.commit()

    async def get(self, query_id: str) -> WaitingRow | None:
        async with self.engine.connect() as connection:
            row = (await connection.execute(sa.select(waiting_queries).where(_table.query_id == query_id))).first()
        return None if row is None else _row(row)

    async def rows(self, query_ids: Iterable[str]) -> dict[str, WaitingRow]:
        ids = list(query_ids)
        if not ids:
            return {}
        async with self.engine.connect() as connection:
            rows = await connection.execute(sa.select(waiting_queries).where(_table.query_id.in_(ids)))
            return {row.query_id: _row(row) for row in rows}

    async def update(self, query_id: str, only_from: Iterable[str] | None = None, **values: Any) -> bool:
        statement = sa.update(waiting_queries).where(_table.query_id == query_id)
        if only_from is not None:
            statement = statement.where(_table.state.in_(list(only_from)))
        async with self.engine.begin() as connection:
            changed = (await connection.execute(statement.values(**values))).rowcount > 0
            if changed and values.get("state") in ENDED:
                await _free_slot_of(connection, query_id)
            return changed

    async def take(self, slot_id: str, backend: str, user: str, lease_until: int) -> None:
        async with self.engine.begin() as connection:
            await SqlDecision(connection, "", False).take(slot_id, backend, user, lease_until)

    async def bind(self, slot_id: str, query_id: str) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(
                sa.update(admission_slots).where(admission_slots.c.slot_id == slot_id).values(query_id=query_id)
            )

    async def release(self, slot_id: str | None = None, query_id: str | None = None) -> int:
        slots = admission_slots.c
        condition = slots.slot_id == slot_id if slot_id is not None else slots.query_id == query_id
        async with self.engine.begin() as connection:
            return (await connection.execute(sa.delete(admission_slots).where(condition))).rowcount

    async def renew(self, query_ids: list[str], waiting_ids: list[str], now_ms: int, lease_until: int) -> None:
        if not query_ids and not waiting_ids:
            return
        async with self.engine.begin() as connection:
            if query_ids:
                slots = admission_slots.c
                await connection.execute(
                    sa.update(admission_slots)
                    .where(sa.or_(slots.query_id.in_(query_ids), slots.slot_id.in_(query_ids)))
                    .values(lease_until=lease_until)
                )
            if waiting_ids:
                await connection.execute(
                    sa.update(waiting_queries).where(_table.query_id.in_(waiting_ids)).values(last_seen_at=now_ms)
                )

    async def groups_waiting(self) -> list[str]:
        async with self.engine.connect() as connection:
            rows = await connection.execute(
                sa.select(_table.routing_group).where(_table.state.in_((QUEUED, ADMITTED))).distinct()
            )
            return [group for (group,) in rows]

    async def counts(self, now_ms: int) -> tuple[dict[tuple[str, str], int], Counts]:
        async with self.engine.connect() as connection:
            waiting = await connection.execute(
                sa.select(_table.routing_group, _table.user_name, sa.func.count())
                .where(_table.state == QUEUED)
                .group_by(_table.routing_group, _table.user_name)
            )
            queued = {(group, user or ""): count for group, user, count in waiting}
            slots = admission_slots.c
            running = await connection.execute(
                sa.select(slots.backend_name, sa.func.count())
                .where(slots.lease_until >= now_ms)
                .group_by(slots.backend_name)
            )
            return queued, {backend: count for backend, count in running}

    async def purge(self, ended_before_ms: int, slots_before_ms: int) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(
                sa.delete(waiting_queries).where(_table.state.not_in(IN_QUEUE), _table.last_seen_at < ended_before_ms)
            )
            await connection.execute(sa.delete(admission_slots).where(admission_slots.c.lease_until < slots_before_ms))

    def counts_now(self) -> tuple[dict[tuple[str, str], int], Counts] | None:
        return None  # a read of the store: the views take the tick's, once a second

    async def close(self) -> None:
        pass  # the store's engine is the store's to close
