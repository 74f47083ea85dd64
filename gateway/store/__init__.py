"""Where the gateway keeps backends and the query history: ``Store`` is the interface, ``SqlStore``
(SQLite, PostgreSQL) and ``MemoryStore`` (one process, nothing kept) implement it."""

from gateway.store.base import Store, seed_backends
from gateway.store.memory import MemoryStore
from gateway.store.records import (
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
from gateway.store.sql import SqlStore, redacted

MEMORY_PREFIX = "memory:"


async def open_store(url: str, migrate: bool = True) -> Store:
    """The store at ``url``: ``memory://``, ``sqlite:///path.db`` or ``postgresql://...``."""
    if url.startswith(MEMORY_PREFIX):
        return MemoryStore(url)
    return await SqlStore.open(url, migrate=migrate)


__all__ = [
    "AuditEntry",
    "BackendWork",
    "CachedResult",
    "ClusterRecord",
    "DuplicateBackend",
    "DuplicateQuery",
    "MemoryStore",
    "QueryCount",
    "QueryFilter",
    "QueryOutcome",
    "QueryRecord",
    "SharedCheck",
    "SharedRulesText",
    "SqlStore",
    "Store",
    "StoreError",
    "TransactionBinding",
    "now_ms",
    "open_store",
    "redacted",
    "seed_backends",
]
