"""Persistence of backends and query history: embedded SQLite or PostgreSQL, one schema."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gateway.store.schema import backends, query_history

MIGRATIONS = Path(__file__).parent / "migrations"


class StoreError(RuntimeError):
    """The store cannot be reached or used; the message says which and why."""


class DuplicateBackend(ValueError):
    pass


@dataclass(frozen=True)
class BackendRecord:
    name: str
    proxy_to: str
    routing_group: str = "adhoc"
    active: bool = True
    external_url: str | None = None


@dataclass
class QueryRecord:
    query_id: str
    backend_name: str
    backend_url: str
    routing_group: str
    user_name: str | None
    source: str | None
    client_tags: str | None
    query_text: str | None
    submitted_at: int
    state: str | None = None
    error_name: str | None = None
    finished_at: int | None = None
    elapsed_ms: int | None = None
    trace_parent: str | None = None


@dataclass
class QueryFilter:
    user: str | None = None
    backend: str | None = None
    routing_group: str | None = None
    state: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None


def async_url(url: str) -> str:
    """The SQLAlchemy async URL for a store URL as users write it."""
    if url.startswith("sqlite:///") or url == "sqlite://":
        return "sqlite+aiosqlite" + url.removeprefix("sqlite")
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url.removeprefix(prefix)
    if url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        return url
    raise StoreError(f"unsupported store URL {url!r}: use sqlite:///path/to/gateway.db or postgresql://user@host/db")


def now_ms() -> int:
    return int(time.time() * 1000)


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    # WAL lets several gateway workers read while one writes; busy_timeout makes writers wait, not fail.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Store:
    def __init__(self, engine: AsyncEngine, url: str) -> None:
        self.engine = engine
        self.url = url

    @classmethod
    async def open(cls, url: str, migrate: bool = True) -> Store:
        """Connect to the store at ``url``, bringing its schema up to date when ``migrate``."""
        target = async_url(url)
        if target.startswith("sqlite"):
            path = target.split(":///", 1)[1] if ":///" in target else ""
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_async_engine(target)
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            engine = create_async_engine(target, pool_size=5, max_overflow=10, pool_pre_ping=True)
        store = cls(engine, url)
        if migrate:
            try:
                async with engine.begin() as connection:
                    await connection.run_sync(_upgrade)
            except Exception as error:
                await engine.dispose()
                raise StoreError(f"cannot prepare the store at {_redacted(url)}: {error}") from error
        return store

    async def close(self) -> None:
        await self.engine.dispose()

    # -- backends ---------------------------------------------------------------------------
    async def list_backends(self) -> list[BackendRecord]:
        async with self.engine.connect() as connection:
            rows = await connection.execute(sa.select(backends).order_by(backends.c.name))
            return [_backend(row) for row in rows]

    async def get_backend(self, name: str) -> BackendRecord | None:
        async with self.engine.connect() as connection:
            row = (await connection.execute(sa.select(backends).where(backends.c.name == name))).first()
            return _backend(row) if row else None

    async def add_backend(self, backend: BackendRecord) -> None:
        try:
            async with self.engine.begin() as connection:
                await connection.execute(sa.insert(backends).values(**asdict(backend), updated_at=now_ms()))
        except IntegrityError:
            raise DuplicateBackend(f"a backend named {backend.name!r} exists already") from None

    async def update_backend(self, backend: BackendRecord) -> bool:
        """Replace ``backend``'s settings; False when there is no backend of that name."""
        async with self.engine.begin() as connection:
            result = await connection.execute(
                sa.update(backends)
                .where(backends.c.name == backend.name)
                .values(**asdict(backend), updated_at=now_ms())
            )
            return result.rowcount > 0

    async def delete_backend(self, name: str) -> bool:
        async with self.engine.begin() as connection:
            result = await connection.execute(sa.delete(backends).where(backends.c.name == name))
            return result.rowcount > 0

    async def set_active(self, name: str, active: bool) -> bool:
        async with self.engine.begin() as connection:
            result = await connection.execute(
                sa.update(backends).where(backends.c.name == name).values(active=active, updated_at=now_ms())
            )
            return result.rowcount > 0

    async def seed_backends(self, seeds: list[BackendRecord]) -> None:
        """Make the configured backends exist, keeping the active flag operators set through the API."""
        existing = {b.name: b for b in await self.list_backends()}
        for seed in seeds:
            current = existing.get(seed.name)
            if current is None:
                await self.add_backend(seed)
            else:
                await self.update_backend(
                    BackendRecord(seed.name, seed.proxy_to, seed.routing_group, current.active, seed.external_url)
                )

    # -- query history ----------------------------------------------------------------------
    async def record_queries(self, records: list[QueryRecord]) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(sa.insert(query_history), [asdict(r) for r in records])

    async def finish_queries(self, outcomes: list[tuple[str, str, str | None, int]]) -> None:
        """Record (query id, state, error name, finished at) for queries that have no outcome yet."""
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
                finished_at=sa.bindparam("at"),
                elapsed_ms=sa.bindparam("at") - submitted,
            )
        )
        async with self.engine.begin() as connection:
            await connection.execute(
                statement,
                [
                    {"qid": query_id, "new_state": state, "new_error": error, "at": at}
                    for query_id, state, error, at in outcomes
                ],
            )

    async def backend_for_query(self, query_id: str) -> tuple[str, str, str | None] | None:
        """The (name, URL) of the backend that runs ``query_id``, if the gateway routed it, and the
        query's trace context (``traceparent``, None when it was not traced)."""
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(
                    sa.select(
                        query_history.c.backend_name, query_history.c.backend_url, query_history.c.trace_parent
                    ).where(query_history.c.query_id == query_id)
                )
            ).first()
            return (row[0], row[1], row[2]) if row else None

    async def find_queries(
        self, where: QueryFilter, limit: int = 100, offset: int = 0
    ) -> tuple[int, list[QueryRecord]]:
        conditions = []
        for column, value in (
            (query_history.c.user_name, where.user),
            (query_history.c.backend_name, where.backend),
            (query_history.c.routing_group, where.routing_group),
        ):
            if value is not None:
                conditions.append(column == value)
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
            return result.rowcount


def _backend(row: sa.Row[Any]) -> BackendRecord:
    return BackendRecord(
        name=row.name,
        proxy_to=row.proxy_to,
        routing_group=row.routing_group,
        active=bool(row.active),
        external_url=row.external_url,
    )


def _upgrade(connection: Connection) -> None:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _redacted(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"
    return url
