"""The tables of admission control shared by a fleet (PostgreSQL): the queries waiting in the gateway,
the slots of the queries running under admission control, and each group's fair-queue turns.

What to admit is decided in ``gateway.queries.admission.shared``, inside ``SharedQueueStore.locked``: one
transaction holding the routing group's advisory lock, so two nodes never hand out the same room.
Everything else here is one statement, safe without the lock (a state changes only from the state
the caller saw).
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, fields
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.store.records import ADMISSION_CHANGED
from gateway.store.schema import admission_slots, fair_turns, waiting_queries
from gateway.store.sql import CHANGES_CHANNEL

# The advisory-lock keys of admission control: this number in the high half, the group's CRC in the low.
_LOCK_SPACE = 0x61646D69 << 32
WAITING, ADMITTED, SENDING = "QUEUED", "ADMITTED", "SENDING"


@dataclass(slots=True)
class WaitingRow:
    """A query waiting in the gateway, as the store keeps it."""

    query_id: str
    slug: str
    routing_group: str
    party: str
    user_name: str | None
    weight: float
    user_limit: int | None
    state: str
    backend_name: str | None
    token: int
    enqueued_at: int
    deadline_at: int | None
    max_queue_wait: float | None
    queued_ms: int
    last_seen_at: int
    submission: str
    trace_parent: str | None = None
    error_name: str | None = None
    error_message: str | None = None
    started_query_id: str | None = None


_COLUMNS = [field.name for field in fields(WaitingRow)]


@dataclass(slots=True)
class QueuedHead:
    """What deciding which waiting query starts next needs of one (not its submission)."""

    query_id: str
    party: str
    user_name: str | None
    weight: float
    user_limit: int | None
    enqueued_at: int


_HEAD_COLUMNS = [field.name for field in fields(QueuedHead)]


def _row(row: sa.Row[Any]) -> WaitingRow:
    return WaitingRow(**{name: getattr(row, name) for name in _COLUMNS})


class GroupTransaction:
    """What one admission decision reads and writes, in one transaction under its group's lock."""

    def __init__(self, connection: AsyncConnection, group: str) -> None:
        self.connection = connection
        self.group = group

    async def end_overdue(self, now_ms: int, unseen_before_ms: int, expired_message: Any) -> list[tuple[str, str]]:
        """Waiting queries past their deadline fail (``expired_message(row)`` says why); those whose
        client stopped polling (and admitted ones nobody came to send) are cancelled, their slots
        freed. Each one's id, and "expired" or "abandoned"."""
        table = waiting_queries.c
        rows = await self.connection.execute(
            sa.select(waiting_queries).where(
                table.routing_group == self.group,
                sa.or_(
                    sa.and_(table.state == WAITING, table.deadline_at <= now_ms),
                    sa.and_(table.state.in_((WAITING, ADMITTED)), table.last_seen_at < unseen_before_ms),
                ),
            )
        )
        ended: list[tuple[str, str]] = []
        for row in map(_row, rows):
            if row.state == WAITING and row.deadline_at is not None and row.deadline_at <= now_ms:
                values = {"state": "FAILED", "error_name": "EXCEEDED_TIME_LIMIT", "error_message": expired_message(row)}
                outcome = "expired"
            else:
                values = {"state": "CANCELED", "error_name": "ABANDONED"}
                outcome = "abandoned"
            await self.connection.execute(
                sa.update(waiting_queries).where(table.query_id == row.query_id).values(**values)
            )
            if row.state == ADMITTED:
                await self.connection.execute(
                    sa.delete(admission_slots).where(admission_slots.c.slot_id == row.query_id)
                )
            ended.append((row.query_id, outcome))
        return ended

    async def waiting(self, per_party: int) -> list[QueuedHead]:
        """The group's first ``per_party`` waiting queries of each party, in the order they came: no
        decision can start more than that many of one party, however many wait."""
        if self.connection.dialect.name == "postgresql":
            # A loose index scan of the waiting queries' index: a probe per party for the next party,
            # one for its first queries. 10,000 waiting of 5 parties cost 10 probes, not 10,000 rows.
            rows = await self.connection.execute(_FIRSTS_OF_EACH_PARTY, {"group": self.group, "per_party": per_party})
        else:
            table = waiting_queries.c
            place = (
                sa.func.row_number()
                .over(partition_by=table.party, order_by=(table.enqueued_at, table.query_id))
                .label("place")
            )
            firsts = (
                sa.select(*(table[name] for name in _HEAD_COLUMNS), place)
                .where(table.routing_group == self.group, table.state == WAITING)
                .subquery()
            )
            rows = await self.connection.execute(
                sa.select(*(firsts.c[name] for name in _HEAD_COLUMNS)).where(firsts.c.place <= per_party)
            )
        heads = [QueuedHead(*row) for row in rows]
        heads.sort(key=lambda head: (head.enqueued_at, head.query_id))
        return heads

    async def count_waiting(self) -> int:
        table = waiting_queries.c
        count = await self.connection.scalar(
            sa.select(sa.func.count()).where(table.routing_group == self.group, table.state == WAITING)
        )
        return int(count or 0)

    async def running(self, now_ms: int) -> tuple[dict[str, int], dict[str, int]]:
        """Slots in use (leases not run out) per backend and per user, over the whole fleet."""
        table = admission_slots.c
        per_backend: dict[str, int] = {}
        per_user: dict[str, int] = {}
        rows = await self.connection.execute(
            sa.select(table.backend_name, table.user_name, sa.func.count())
            .where(table.lease_until >= now_ms)
            .group_by(table.backend_name, table.user_name)
        )
        for backend, user, count in rows:
            per_backend[backend] = per_backend.get(backend, 0) + count
            per_user[user] = per_user.get(user, 0) + count
        return per_backend, per_user

    async def turns(self) -> str | None:
        return await self.connection.scalar(
            sa.select(fair_turns.c.turns).where(fair_turns.c.routing_group == self.group)
        )

    async def save_turns(self, turns: str) -> None:
        updated = await self.connection.execute(
            sa.update(fair_turns).where(fair_turns.c.routing_group == self.group).values(turns=turns)
        )
        if updated.rowcount == 0:
            await self.connection.execute(sa.insert(fair_turns).values(routing_group=self.group, turns=turns))

    async def announce(self) -> None:
        """Every node hears of this decision when it commits (a client of theirs may now start)."""
        await _announce(self.connection)

    async def admit(self, query_id: str, backend: str, user: str, lease_until: int, queued_ms: int) -> None:
        await self.connection.execute(
            sa.update(waiting_queries)
            .where(waiting_queries.c.query_id == query_id)
            .values(state=ADMITTED, backend_name=backend, queued_ms=queued_ms)
        )
        await self.take(query_id, backend, user, lease_until)

    async def take(self, slot_id: str, backend: str, user: str, lease_until: int) -> None:
        await self.connection.execute(
            sa.insert(admission_slots).values(
                slot_id=slot_id, backend_name=backend, user_name=user, lease_until=lease_until
            )
        )

    async def add(self, row: WaitingRow) -> None:
        await self.connection.execute(
            sa.insert(waiting_queries).values(**{name: getattr(row, name) for name in _COLUMNS})
        )


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
        SELECT w.query_id, w.party, w.user_name, w.weight, w.user_limit, w.enqueued_at
          FROM gateway_waiting_query w
         WHERE w.routing_group = :group AND w.state = 'QUEUED' AND w.party = p.party
         ORDER BY w.enqueued_at, w.query_id LIMIT :per_party
      ) AS firsts
     WHERE p.party IS NOT NULL
    """
)


async def _announce(connection: AsyncConnection) -> None:
    if connection.dialect.name == "postgresql":
        await connection.execute(sa.select(sa.func.pg_notify(CHANGES_CHANNEL, ADMISSION_CHANGED)))


class SharedQueueStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"

    @contextlib.asynccontextmanager
    async def locked(self, group: str) -> AsyncIterator[GroupTransaction]:
        """A transaction holding ``group``'s lock until it ends (PostgreSQL's advisory transaction
        lock; SQLite, one process only, serialises writers by itself)."""
        async with self.engine.begin() as connection:
            if self.postgres:
                key = _LOCK_SPACE | zlib.crc32(group.encode())
                await connection.execute(sa.select(sa.func.pg_advisory_xact_lock(key - (1 << 63))))
            yield GroupTransaction(connection, group)

    async def get(self, query_id: str) -> WaitingRow | None:
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(sa.select(waiting_queries).where(waiting_queries.c.query_id == query_id))
            ).first()
        return None if row is None else _row(row)

    async def rows(self, query_ids: Iterable[str]) -> dict[str, WaitingRow]:
        ids = list(query_ids)
        if not ids:
            return {}
        async with self.engine.connect() as connection:
            rows = await connection.execute(sa.select(waiting_queries).where(waiting_queries.c.query_id.in_(ids)))
            return {row.query_id: _row(row) for row in rows}

    async def update(self, query_id: str, only_from: Iterable[str] | None = None, **values: Any) -> bool:
        """Changes the row (only while its state is one of ``only_from``, if given); whether it did."""
        statement = sa.update(waiting_queries).where(waiting_queries.c.query_id == query_id)
        if only_from is not None:
            statement = statement.where(waiting_queries.c.state.in_(list(only_from)))
        async with self.engine.begin() as connection:
            return (await connection.execute(statement.values(**values))).rowcount > 0

    async def take(self, slot_id: str, backend: str, user: str, lease_until: int) -> None:
        """A slot taken without a check: for the next backend of a query whose first one refused it."""
        async with self.engine.begin() as connection:
            await GroupTransaction(connection, "").take(slot_id, backend, user, lease_until)

    async def bind(self, slot_id: str, query_id: str) -> None:
        """The backend took the slot's query, under this id: any node that sees it end frees the slot."""
        async with self.engine.begin() as connection:
            await connection.execute(
                sa.update(admission_slots).where(admission_slots.c.slot_id == slot_id).values(query_id=query_id)
            )

    async def release(self, slot_id: str | None = None, query_id: str | None = None) -> int:
        table = admission_slots.c
        condition = table.slot_id == slot_id if slot_id is not None else table.query_id == query_id
        async with self.engine.begin() as connection:
            return (await connection.execute(sa.delete(admission_slots).where(condition))).rowcount

    async def renew(self, query_ids: list[str], waiting_ids: list[str], now_ms: int, lease_until: int) -> None:
        """Queries whose clients polled lately: their slots' leases go on, waiting ones are not
        abandoned."""
        async with self.engine.begin() as connection:
            if query_ids:
                table = admission_slots.c
                await connection.execute(
                    sa.update(admission_slots)
                    .where(sa.or_(table.query_id.in_(query_ids), table.slot_id.in_(query_ids)))
                    .values(lease_until=lease_until)
                )
            if waiting_ids:
                await connection.execute(
                    sa.update(waiting_queries)
                    .where(waiting_queries.c.query_id.in_(waiting_ids))
                    .values(last_seen_at=now_ms)
                )

    async def groups_waiting(self) -> list[str]:
        """The groups with queries waiting, or admitted and not sent yet (which may be abandoned)."""
        table = waiting_queries.c
        async with self.engine.connect() as connection:
            rows = await connection.execute(
                sa.select(table.routing_group).where(table.state.in_((WAITING, ADMITTED))).distinct()
            )
            return [group for (group,) in rows]

    async def counts(self, now_ms: int) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
        """Waiting queries per (group, user) and slots in use per backend, over the fleet."""
        table = waiting_queries.c
        async with self.engine.connect() as connection:
            waiting = await connection.execute(
                sa.select(table.routing_group, table.user_name, sa.func.count())
                .where(table.state == WAITING)
                .group_by(table.routing_group, table.user_name)
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
        """Forgets waiting queries that ended (or moved to a backend) long ago, and run-out slots."""
        table = waiting_queries.c
        async with self.engine.begin() as connection:
            await connection.execute(
                sa.delete(waiting_queries).where(
                    table.state.not_in((WAITING, ADMITTED, SENDING)), table.last_seen_at < ended_before_ms
                )
            )
            await connection.execute(sa.delete(admission_slots).where(admission_slots.c.lease_until < slots_before_ms))
