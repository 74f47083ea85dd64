"""Where the gateway keeps backends and query history."""

from gateway.store.store import (
    BackendRecord,
    DuplicateBackend,
    QueryFilter,
    QueryRecord,
    Store,
    StoreError,
    now_ms,
)

__all__ = ["BackendRecord", "DuplicateBackend", "QueryFilter", "QueryRecord", "Store", "StoreError", "now_ms"]
