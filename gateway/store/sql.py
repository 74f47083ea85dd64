"""The store on SQL: embedded SQLite or PostgreSQL, one schema, Alembic migrations."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from pydantic import ValidationError
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from gateway.store.backend import Backend
from gateway.store.contact import StoreContact
from gateway.store.records import (
    ALL_GROUPS,
    ANYTHING_CHANGED,
    BACKENDS_CHANGED,
    FAILED,
    RULES_CHANGED,
    AuditEntry,
    BackendWork,
    CachedResult,
    ClusterRecord,
    DuplicateBackend,
    DuplicateQuery,
    QueryCount,
    QueryFilter,
    QueryOutcome,
    QueryRecord,
    SharedCheck,
    SharedRulesText,
    StoreError,
    TransactionBinding,
    now_ms,
)
from gateway.store.schema import (
    audit_log,
    backends,
    cache_purges,
    clusters,
    fitted,
    leases,
    query_history,
    result_cache,
    secrets_table,
    shared_checks,
    shared_rules,
    transactions,
)

MIGRATIONS = Path(__file__).parent / "migrations"
# PostgreSQL's channel for changes other workers and nodes must see at once (payload: what changed).
CHANGES_CHANNEL = "trino_gateway_changes"
LISTEN_PING_SECONDS = 15.0
# pg_advisory_xact_lock's key for schema migrations (any number other code of the database does not use).
MIGRATION_LOCK = 0x7472696E6F6777
LISTEN_RETRY_SECONDS = 5.0
# Each worker's connections to PostgreSQL: kept open, and opened beyond them while needed.
POOL_SIZE, POOL_OVERFLOW = 5, 10
log = logging.getLogger("gateway.store")


def async_url(url: str) -> str:
    """The SQLAlchemy async URL for a store URL as users write it."""
    if url.startswith("sqlite:///") or url == "sqlite://":
        return "sqlite+aiosqlite" + url.removeprefix("sqlite")
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url.removeprefix(prefix)
    if url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        return url
    raise StoreError(
        f"unsupported store URL {url!r}: use sqlite:///path/to/gateway.db, postgresql://user@host/db or memory://"
    )


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    # WAL lets several gateway workers read while one writes; busy_timeout makes writers wait, not fail.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class SqlStore:
    def __init__(self, engine: AsyncEngine, url: str, ping_engine: AsyncEngine | None = None) -> None:
        """``ping_engine``: where ``ping`` connects (default: ``engine``'s pool)."""
        self.engine = engine
        self.url = url
        self.ping_engine = ping_engine or engine
        # Every statement that returns, whoever issued it through this engine (the admission
        # control's too), is an answer from the store.
        self.contact = StoreContact()
        event.listen(engine.sync_engine, "after_cursor_execute", lambda *_: self.contact.answered())

    @classmethod
    async def open(cls, url: str, migrate: bool = True) -> SqlStore:
        """Connect to the store at ``url``, bringing its schema up to date when ``migrate``."""
        target = async_url(url)
        if target.startswith("sqlite"):
            path = target.split(":///", 1)[1] if ":///" in target else ""
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_async_engine(target)
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
            on_disk = bool(path) and path != ":memory:"  # (another connection to memory: another database)
        else:
            engine = create_async_engine(target, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW, pool_pre_ping=True)
            on_disk = True
        # The ping's own connection, made for it and closed after it: it runs only when the worker had
        # no other word from the store for a while (gateway.control.readiness), and must not wait for
        # the pool, whose connections a burst holds while they wait for admission control's lock.
        store = cls(engine, url, create_async_engine(target, poolclass=NullPool) if on_disk else None)
        if migrate:
            try:
                async with engine.begin() as connection:
                    if engine.dialect.name == "postgresql":
                        # Nodes of a fleet that start together on an empty database migrate one at a
                        # time (the lock ends with this transaction); the later ones find it done.
                        await connection.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK)))
                    await connection.run_sync(upgrade)
            except Exception as error:
                await store.close()
                raise StoreError(f"cannot prepare the store at {redacted(url)}: {error}") from error
        return store

    async def close(self) -> None:
        await self.engine.dispose()
        if self.ping_engine is not self.engine:
            await self.ping_engine.dispose()

    async def ping(self) -> None:
        async with self.ping_engine.connect() as connection:
            await connection.execute(sa.select(sa.func.count()).select_from(backends))

    # -- backends ---------------------------------------------------------------------------
    async def list_backends(self) -> list[Backend]:
        async with self.engine.connect() as connection:
            rows = await connection.execute(sa.select(backends).order_by(backends.c.name))
            found = []
            for row in rows:
                try:
                    found.append(_backend(row))
                except ValidationError as error:
                    # A row written by hand (or by a newer gateway) must not take every backend down.
                    log.error("backend %r in the store is not valid and is left out: %s", row.name, error)
            return found

    async def get_backend(self, name: str) -> Backend | None:
        async with self.engine.connect() as connection:
            row = (await connection.execute(sa.select(backends).where(backends.c.name == name))).first()
            return _backend(row) if row else None

    async def add_backend(self, backend: Backend) -> None:
        try:
            async with self.engine.begin() as connection:
                await connection.execute(sa.insert(backends).values(**_backend_row(backend)))
                await self._announce(connection, BACKENDS_CHANGED)
        except IntegrityError:
            raise DuplicateBackend(f"a backend named {backend.name!r} exists already") from None

    async def update_backend(self, backend: Backend) -> bool:
        async with self.engine.begin() as connection:
            result = await connection.execute(
                sa.update(backends).where(backends.c.name == backend.name).values(**_backend_row(backend))
            )
            await self._announce(connection, BACKENDS_CHANGED)
            return result.rowcount > 0

    async def delete_backend(self, name: str) -> bool:
        async with self.engine.begin() as connection:
            result = await connection.execute(sa.delete(backends).where(backends.c.name == name))
            await self._announce(connection, BACKENDS_CHANGED)
            return result.rowcount > 0

    async def set_active(self, name: str, active: bool) -> bool:
        async with self.engine.begin() as connection:
            result = await connection.execute(
                sa.update(backends).where(backends.c.name == name).values(active=active, updated_at=now_ms())
            )
            await self._announce(connection, BACKENDS_CHANGED)
            return result.rowcount > 0

    # -- changes, told to every worker and node -------------------------------------------------
    async def _announce(self, connection: AsyncConnection, what: str) -> None:
        # PostgreSQL delivers a NOTIFY when its transaction commits, to every session listening.
        if self.engine.dialect.name == "postgresql":
            await connection.execute(sa.select(sa.func.pg_notify(CHANGES_CHANNEL, what)))

    async def get_routing_rules(self) -> SharedRulesText | None:
        async with self.engine.connect() as connection:
            row = (await connection.execute(sa.select(shared_rules).where(shared_rules.c.id == 1))).first()
            return None if row is None else SharedRulesText(row.text, row.changed_at, row.changed_by)

    async def put_routing_rules(self, rules: SharedRulesText) -> None:
        values = {"text": rules.text, "changed_at": rules.changed_at, "changed_by": rules.changed_by}
        upsert = _insert(self.engine.dialect.name, shared_rules).values(id=1, **values)
        async with self.engine.begin() as connection:
            await connection.execute(upsert.on_conflict_do_update(index_elements=["id"], set_=values))
            await self._announce(connection, RULES_CHANGED)

    async def watch_changes(self, on_change: Callable[[str], None]) -> None:
        if self.engine.dialect.name != "postgresql":
            return  # SQLite tells nobody: readers poll (routing.backend_refresh_seconds).

        def notified(_connection: object, _pid: int, _channel: str, payload: str) -> None:
            on_change(payload)

        while True:
            try:
                async with self.engine.connect() as connection:
                    listener = (await connection.get_raw_connection()).driver_connection
                    await listener.add_listener(CHANGES_CHANNEL, notified)
                    try:
                        # (Re)connected: what changed while nobody listened is read anew.
                        on_change(ANYTHING_CHANGED)
                        while True:
                            # A lost connection shows here, and the loop listens again on a new one.
                            await asyncio.sleep(LISTEN_PING_SECONDS)
                            await connection.execute(sa.select(1))
                    finally:
                        with contextlib.suppress(Exception):
                            await listener.remove_listener(CHANGES_CHANNEL, notified)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("cannot listen for changes in the store (%s); polling only, trying again soon", error)
                await asyncio.sleep(LISTEN_RETRY_SECONDS)

    # -- query history ----------------------------------------------------------------------
    async def record_queries(self, records: list[QueryRecord]) -> None:
        try:
            async with self.engine.begin() as connection:
                await connection.execute(sa.insert(query_history), [asdict(r) for r in records])
        except IntegrityError as error:
            raise DuplicateQuery(str(error.orig)) from None

    async def finish_queries(self, outcomes: list[QueryOutcome]) -> None:
        submitted = (
            sa.select(query_history.c.submitted_at)
            .where(query_history.c.query_id == sa.bindparam("qid"))
            .scalar_subquery()
        )
        statement = (
            sa.update(query_history)
            .where(query_history.c.query_id == sa.bindparam("qid"), query_history.c.state.is_(None))
            .values(
                state=sa.bindparam("new_state"),
                error_name=sa.bindparam("new_error"),
                gateway_query_id=sa.func.coalesce(sa.bindparam("gid"), query_history.c.gateway_query_id),
                finished_at=sa.bindparam("at"),
                elapsed_ms=sa.bindparam("at") - submitted,
            )
        )
        async with self.engine.begin() as connection:
            await connection.execute(
                statement,
                [
                    {
                        "qid": o.query_id,
                        "new_state": o.state,
                        "new_error": o.error_name,
                        "at": o.finished_at,
                        "gid": o.gateway_query_id,
                    }
                    for o in outcomes
                ],
            )

    async def get_query(self, query_id: str) -> QueryRecord | None:
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(sa.select(query_history).where(query_history.c.query_id == query_id))
            ).first()
            return QueryRecord(**row._mapping) if row else None

    async def find_queries(
        self, where: QueryFilter, limit: int = 100, offset: int = 0
    ) -> tuple[int, list[QueryRecord]]:
        conditions = []
        for column, value in (
            (query_history.c.user_name, where.user),
            (query_history.c.backend_name, where.backend),
            (query_history.c.routing_group, where.routing_group),
            (query_history.c.transaction_id, where.transaction_id),
            (query_history.c.routing_rule, where.routing_rule),
        ):
            if value is not None:
                conditions.append(column == value)
        if where.text is not None:
            # ILIKE on PostgreSQL, lower() LIKE lower() on SQLite; autoescape makes % and _ literal.
            conditions.append(query_history.c.query_text.icontains(where.text, autoescape=True))
        if where.id_prefix is not None:
            # Not LIKE: SQLite's is case-insensitive, and a prefix cut to the column's length could end
            # in half an escape. The prefix is fitted as the ids were when written. The query's id, or
            # the gateway id it waited under (what its client saw first).
            prefix = fitted(query_history.c.query_id, where.id_prefix)
            conditions.append(
                sa.or_(
                    *(
                        sa.func.substr(column, 1, len(prefix)) == prefix
                        for column in (query_history.c.query_id, query_history.c.gateway_query_id)
                    )
                )
            )
        if where.state is not None:
            conditions.append(
                query_history.c.state.is_(None) if where.state == "RUNNING" else query_history.c.state == where.state
            )
        if where.since_ms is not None:
            conditions.append(query_history.c.submitted_at >= where.since_ms)
        if where.until_ms is not None:
            conditions.append(query_history.c.submitted_at < where.until_ms)
        async with self.engine.connect() as connection:
            total = (
                await connection.execute(sa.select(sa.func.count()).select_from(query_history).where(*conditions))
            ).scalar_one()
            rows = await connection.execute(
                sa.select(query_history)
                .where(*conditions)
                .order_by(query_history.c.submitted_at.desc(), query_history.c.query_id)
                .limit(limit)
                .offset(offset)
            )
            return total, [QueryRecord(**row._mapping) for row in rows]

    async def purge_queries(self, older_than_ms: int) -> int:
        async with self.engine.begin() as connection:
            result = await connection.execute(
                sa.delete(query_history).where(query_history.c.submitted_at < older_than_ms)
            )
            await connection.execute(sa.delete(transactions).where(transactions.c.ended_at < older_than_ms))
            return result.rowcount

    async def query_stats(self, since_ms: int, until_ms: int, step_ms: int) -> list[QueryCount]:
        # The bucket is computed in a subquery and grouped by outside it: PostgreSQL cannot tell that
        # the same expression with its own parameters in SELECT and in GROUP BY is one expression.
        bucketed = (
            sa.select(
                ((query_history.c.submitted_at // step_ms) * step_ms).label("at"),
                query_history.c.routing_group,
                query_history.c.backend_name,
                query_history.c.state,
            )
            .where(query_history.c.submitted_at >= since_ms, query_history.c.submitted_at < until_ms)
            .subquery()
        )
        failed = sa.case((bucketed.c.state == FAILED, 1), else_=0)
        statement = sa.select(
            bucketed.c.at,
            bucketed.c.routing_group,
            bucketed.c.backend_name,
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(failed), 0),
        ).group_by(bucketed.c.at, bucketed.c.routing_group, bucketed.c.backend_name)
        async with self.engine.connect() as connection:
            rows = await connection.execute(statement)
            # Sorted here: PostgreSQL orders text by its collation, Python (and the memory store) by code point.
            return sorted(QueryCount(int(at), group, backend, int(n), int(f)) for at, group, backend, n, f in rows)

    async def unfinished_queries(self, backend: str | None, submitted_before: int, limit: int) -> list[QueryRecord]:
        conditions = [query_history.c.state.is_(None), query_history.c.submitted_at < submitted_before]
        if backend is not None:
            conditions.append(query_history.c.backend_name == backend)
        async with self.engine.connect() as connection:
            rows = await connection.execute(
                sa.select(query_history).where(*conditions).order_by(query_history.c.submitted_at).limit(limit)
            )
            return [QueryRecord(**row._mapping) for row in rows]

    # -- transactions -------------------------------------------------------------------------
    async def bind_transaction(self, binding: TransactionBinding) -> TransactionBinding:
        try:
            async with self.engine.begin() as connection:
                await connection.execute(sa.insert(transactions).values(**asdict(binding)))
            return binding
        except IntegrityError:
            # Another worker saw the same answer first (or the client sent it twice): theirs stands.
            found = await self.get_transaction(binding.transaction_id)
            return found if found is not None else binding

    async def get_transaction(self, transaction_id: str) -> TransactionBinding | None:
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(sa.select(transactions).where(transactions.c.transaction_id == transaction_id))
            ).first()
            return TransactionBinding(**row._mapping) if row else None

    async def touch_transactions(self, last_used: dict[str, int]) -> None:
        if not last_used:
            return
        statement = (
            sa.update(transactions)
            .where(transactions.c.transaction_id == sa.bindparam("tid"), transactions.c.ended_at.is_(None))
            .values(last_used_at=sa.bindparam("used"))
        )
        async with self.engine.begin() as connection:
            await connection.execute(statement, [{"tid": tid, "used": used} for tid, used in last_used.items()])

    async def end_transactions(
        self,
        reason: str,
        at: int,
        ids: list[str] | None = None,
        backend: str | None = None,
        started_before: int | None = None,
        idle_since: int | None = None,
    ) -> list[str]:
        conditions = [transactions.c.ended_at.is_(None)]
        if ids is not None:
            conditions.append(transactions.c.transaction_id.in_(ids))
        if backend is not None:
            conditions.append(transactions.c.backend_name == backend)
        if started_before is not None:
            conditions.append(transactions.c.started_at < started_before)
        if idle_since is not None:
            conditions.append(transactions.c.last_used_at < idle_since)
        async with self.engine.begin() as connection:
            ended = [
                row[0] for row in await connection.execute(sa.select(transactions.c.transaction_id).where(*conditions))
            ]
            if ended:
                await connection.execute(
                    sa.update(transactions)
                    .where(transactions.c.transaction_id.in_(ended), transactions.c.ended_at.is_(None))
                    .values(ended_at=at, end_reason=reason)
                )
            return ended

    async def open_transactions(self, backend: str | None = None) -> list[TransactionBinding]:
        conditions = [transactions.c.ended_at.is_(None)]
        if backend is not None:
            conditions.append(transactions.c.backend_name == backend)
        async with self.engine.connect() as connection:
            rows = await connection.execute(
                sa.select(transactions).where(*conditions).order_by(transactions.c.started_at)
            )
            return [TransactionBinding(**row._mapping) for row in rows]

    # -- audit ------------------------------------------------------------------------------------
    async def record_audit(self, entry: AuditEntry) -> None:
        values = asdict(entry)
        values.pop("id")
        async with self.engine.begin() as connection:
            await connection.execute(sa.insert(audit_log).values(**values))

    async def find_audit(
        self, actor: str | None = None, since_ms: int | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[int, list[AuditEntry]]:
        conditions = []
        if actor is not None:
            conditions.append(audit_log.c.actor == actor)
        if since_ms is not None:
            conditions.append(audit_log.c.at >= since_ms)
        async with self.engine.connect() as connection:
            total = (
                await connection.execute(sa.select(sa.func.count()).select_from(audit_log).where(*conditions))
            ).scalar_one()
            rows = await connection.execute(
                sa.select(audit_log).where(*conditions).order_by(audit_log.c.id.desc()).limit(limit).offset(offset)
            )
            return total, [AuditEntry(**row._mapping) for row in rows]

    # -- drain ------------------------------------------------------------------------------------
    async def backend_work(self) -> dict[str, BackendWork]:
        async with self.engine.connect() as connection:
            queries = await connection.execute(
                sa.select(query_history.c.backend_name, sa.func.count(), sa.func.min(query_history.c.submitted_at))
                .where(query_history.c.state.is_(None))
                .group_by(query_history.c.backend_name)
            )
            open_transactions = await connection.execute(
                sa.select(transactions.c.backend_name, sa.func.count(), sa.func.min(transactions.c.started_at))
                .where(transactions.c.ended_at.is_(None))
                .group_by(transactions.c.backend_name)
            )
            counts: dict[str, dict[str, int | None]] = {}
            for name, count, oldest in queries:
                counts.setdefault(name, {}).update(unfinished_queries=count, oldest_query_at=oldest)
            for name, count, oldest in open_transactions:
                counts.setdefault(name, {}).update(open_transactions=count, oldest_transaction_at=oldest)
            return {name: BackendWork(**values) for name, values in counts.items()}  # type: ignore[arg-type]

    # -- one health check per backend for the fleet -------------------------------------------------
    async def claim_health_check(self, backend: str, holder: str, now_ms: int, until_ms: int) -> bool:
        # One UPDATE decides between holders: the database locks the row, and a second claimer sees
        # the first one's lease in its WHERE. A backend never claimed has no row: the first INSERT wins,
        # in the same transaction, so that a claim is one round of the store.
        renew = (
            sa.update(shared_checks)
            .where(
                shared_checks.c.backend_name == backend,
                sa.or_(shared_checks.c.holder == holder, shared_checks.c.lease_until < now_ms),
            )
            .values(holder=holder, lease_until=until_ms)
        )
        first = _insert(self.engine.dialect.name, shared_checks).values(
            backend_name=backend, holder=holder, lease_until=until_ms
        )
        async with self.engine.begin() as connection:
            if (await connection.execute(renew)).rowcount > 0:
                return True
            return (await connection.execute(first.on_conflict_do_nothing())).rowcount > 0

    async def publish_health_check(self, holder: str, check: SharedCheck) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(
                sa.update(shared_checks)
                .where(shared_checks.c.backend_name == check.backend_name, shared_checks.c.holder == holder)
                .values(
                    checked_at=check.checked_at,
                    outcome=check.outcome,
                    error=check.error,
                    stats=None if check.stats is None else json.dumps(check.stats),
                    seconds=check.seconds,
                )
            )

    async def release_health_checks(self, holder: str) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(
                sa.update(shared_checks).where(shared_checks.c.holder == holder).values(lease_until=0)
            )

    async def health_checks(self) -> dict[str, SharedCheck]:
        async with self.engine.connect() as connection:
            rows = await connection.execute(sa.select(shared_checks).where(shared_checks.c.checked_at.is_not(None)))
            return {
                row.backend_name: SharedCheck(
                    row.backend_name,
                    row.checked_at,
                    row.outcome,
                    row.error,
                    None if row.stats is None else json.loads(row.stats),
                    row.seconds,
                )
                for row in rows
            }

    # -- cluster management: what the cluster manager did, and leases by name ----------------------
    async def cluster_records(self) -> dict[str, ClusterRecord]:
        async with self.engine.connect() as connection:
            rows = await connection.execute(sa.select(clusters))
            return {
                row.backend_name: ClusterRecord(
                    row.backend_name, row.state, row.since_ms, row.detail, row.failed_ms, row.starts
                )
                for row in rows
            }

    async def move_cluster(self, record: ClusterRecord, expected: frozenset[str | None] | None) -> bool:
        values = {
            "state": record.state,
            "since_ms": record.since_ms,
            "detail": record.detail,
            "failed_ms": record.failed_ms,
            "starts": record.starts,
        }
        insert = _insert(self.engine.dialect.name, clusters).values(backend_name=record.backend, **values)
        async with self.engine.begin() as connection:
            if expected is None:
                await connection.execute(insert.on_conflict_do_update(index_elements=["backend_name"], set_=values))
                return True
            # As claim_health_check: the UPDATE's WHERE sees the state as the database holds it when the
            # row is locked (a racer's write is seen, and it no longer matches); a backend without a
            # record gets one from the first INSERT, the others' conflict and do nothing.
            states = [state for state in expected if state is not None]
            if states:
                update = (
                    sa.update(clusters)
                    .where(clusters.c.backend_name == record.backend, clusters.c.state.in_(states))
                    .values(**values)
                )
                if (await connection.execute(update)).rowcount > 0:
                    return True
            if None in expected:
                return (await connection.execute(insert.on_conflict_do_nothing())).rowcount > 0
            return False

    async def forget_cluster(self, backend: str) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(sa.delete(clusters).where(clusters.c.backend_name == backend))

    async def claim_lease(self, name: str, holder: str, now_ms: int, until_ms: int) -> bool:
        # The health checks' lease, by name (claim_health_check says how one statement decides).
        renew = (
            sa.update(leases)
            .where(leases.c.name == name, sa.or_(leases.c.holder == holder, leases.c.lease_until < now_ms))
            .values(holder=holder, lease_until=until_ms)
        )
        first = _insert(self.engine.dialect.name, leases).values(name=name, holder=holder, lease_until=until_ms)
        async with self.engine.begin() as connection:
            if (await connection.execute(renew)).rowcount > 0:
                return True
            return (await connection.execute(first.on_conflict_do_nothing())).rowcount > 0

    async def release_lease(self, name: str, holder: str) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(sa.delete(leases).where(leases.c.name == name, leases.c.holder == holder))

    # -- the result cache's shared tier ---------------------------------------------------------
    async def get_cached_result(self, key: str, now_ms: int) -> CachedResult | None:
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(
                    sa.select(result_cache).where(result_cache.c.key == key, result_cache.c.expires_ms > now_ms)
                )
            ).first()
            if row is None:
                return None
            return CachedResult(row.key, row.routing_group, row.created_ms, row.expires_ms, bytes(row.body))

    async def put_cached_result(self, entry: CachedResult) -> None:
        values = {
            "routing_group": entry.group,
            "created_ms": entry.created_ms,
            "expires_ms": entry.expires_ms,
            "size": len(entry.blob),
            "body": entry.blob,
        }
        upsert = _insert(self.engine.dialect.name, result_cache).values(key=entry.key, **values)
        async with self.engine.begin() as connection:
            await connection.execute(upsert.on_conflict_do_update(index_elements=["key"], set_=values))

    async def purge_cached_results(self, group: str | None, now_ms: int) -> int:
        delete = sa.delete(result_cache)
        if group is not None:
            delete = delete.where(result_cache.c.routing_group == group)
        mark = _insert(self.engine.dialect.name, cache_purges).values(
            routing_group=ALL_GROUPS if group is None else group, purged_ms=now_ms
        )
        async with self.engine.begin() as connection:
            deleted = (await connection.execute(delete)).rowcount
            await connection.execute(
                mark.on_conflict_do_update(index_elements=["routing_group"], set_={"purged_ms": now_ms})
            )
            return deleted

    async def cache_purge_marks(self) -> dict[str, int]:
        async with self.engine.connect() as connection:
            rows = await connection.execute(sa.select(cache_purges.c.routing_group, cache_purges.c.purged_ms))
            return {group: purged for group, purged in rows}

    async def expire_cached_results(self, now_ms: int) -> int:
        async with self.engine.begin() as connection:
            return (
                await connection.execute(sa.delete(result_cache).where(result_cache.c.expires_ms <= now_ms))
            ).rowcount

    async def cached_result_totals(self) -> tuple[int, int]:
        async with self.engine.connect() as connection:
            entries, size = (
                await connection.execute(
                    sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(result_cache.c.size), 0))
                )
            ).one()
            return int(entries), int(size)

    async def count_cache_words(self, since_ms: int) -> dict[tuple[str, str], int]:
        history = query_history
        select = (
            sa.select(history.c.routing_group, history.c.cache, sa.func.count())
            .where(history.c.submitted_at >= since_ms, history.c.cache.is_not(None))
            .group_by(history.c.routing_group, history.c.cache)
        )
        async with self.engine.connect() as connection:
            return {(group, word): int(count) for group, word, count in await connection.execute(select)}

    async def shared_secret(self, name: str) -> bytes:
        made = _insert(self.engine.dialect.name, secrets_table).values(name=name, value=secrets.token_hex(32))
        async with self.engine.begin() as connection:
            # The first writer's wins; everyone reads that one.
            await connection.execute(made.on_conflict_do_nothing(index_elements=["name"]))
            value = (
                await connection.execute(sa.select(secrets_table.c.value).where(secrets_table.c.name == name))
            ).scalar_one()
        return bytes.fromhex(value)


def _insert(dialect: str, table: sa.Table) -> Any:
    """INSERT that can skip a row whose key exists (both dialects spell it ON CONFLICT DO NOTHING)."""
    return (postgresql_insert if dialect == "postgresql" else sqlite_insert)(table)


# A backend's row and its record: the one place they are converted.
def _backend_row(backend: Backend) -> dict[str, Any]:
    row = backend.model_dump(exclude={"tls", "scaler"})
    row["tls"] = None if backend.tls is None else json.dumps(backend.tls.model_dump())
    row["scaler"] = None if backend.scaler is None else json.dumps(backend.scaler.model_dump())
    row["updated_at"] = now_ms()
    return row


def _backend(row: sa.Row[Any]) -> Backend:
    values = dict(row._mapping)
    values.pop("updated_at", None)
    values["active"] = bool(values["active"])
    tls = values.get("tls")
    values["tls"] = json.loads(tls) if tls else None
    scaler = values.get("scaler")
    values["scaler"] = json.loads(scaler) if scaler else None
    return Backend.model_validate(values)


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Migrate the store's schema to ``revision`` (an older one: tests of a migration over old rows)."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def redacted(url: str) -> str:
    """``url`` without its password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"
    return url
