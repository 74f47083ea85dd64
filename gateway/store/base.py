"""The store's interface: every implementation (SQL, in-memory) keeps these promises."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from gateway.store.backend import Backend
from gateway.store.contact import StoreContact
from gateway.store.records import (
    AuditEntry,
    BackendWork,
    CachedResult,
    ClusterRecord,
    DuplicateBackend,
    QueryCount,
    QueryFilter,
    QueryOutcome,
    QueryRecord,
    SharedCheck,
    SharedRulesText,
    TransactionBinding,
)


class Store(Protocol):
    """Where backends and the query history live, shared by every worker that opens the same URL."""

    url: str
    contact: StoreContact
    """When this process last heard from the store: every call that the store answered counts."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raises when the store cannot be read. Never waits behind this process's other work on the
        store: where the store keeps a pool of connections, the ping has a connection of its own."""
        ...

    # -- backends ---------------------------------------------------------------------------
    async def list_backends(self) -> list[Backend]:
        """Every backend, by name."""
        ...

    async def get_backend(self, name: str) -> Backend | None: ...

    async def add_backend(self, backend: Backend) -> None:
        """Raises ``DuplicateBackend`` when the name is taken."""
        ...

    async def update_backend(self, backend: Backend) -> bool:
        """Replace the backend of that name; False when there is none."""
        ...

    async def delete_backend(self, name: str) -> bool: ...

    async def set_active(self, name: str, active: bool) -> bool:
        """The operator's intent; False when there is no backend of that name."""
        ...

    # -- query history ----------------------------------------------------------------------
    async def record_queries(self, records: list[QueryRecord]) -> None:
        """Insert new queries, all or none; raises ``DuplicateQuery`` when one is recorded already."""
        ...

    async def finish_queries(self, outcomes: list[QueryOutcome]) -> None:
        """Record how queries ended; a query that has an outcome already keeps it."""
        ...

    async def get_query(self, query_id: str) -> QueryRecord | None: ...

    async def find_queries(
        self, where: QueryFilter, limit: int = 100, offset: int = 0
    ) -> tuple[int, list[QueryRecord]]:
        """(how many match, one page of them newest first)."""
        ...

    async def purge_queries(self, older_than_ms: int) -> int:
        """Delete queries submitted before ``older_than_ms``, and transactions ended before it; how many
        queries went."""
        ...

    async def unfinished_queries(self, backend: str | None, submitted_before: int, limit: int) -> list[QueryRecord]:
        """Queries with no outcome yet, oldest first (of ``backend``, or of all)."""
        ...

    async def query_stats(self, since_ms: int, until_ms: int, step_ms: int) -> list[QueryCount]:
        """Queries submitted in [since_ms, until_ms), counted per routing group, backend and bucket of
        ``step_ms`` (buckets start at multiples of ``step_ms`` since the epoch, so they stay put as the
        range moves); buckets with no query are left out; ordered by bucket, group, backend."""
        ...

    # -- transactions -------------------------------------------------------------------------
    async def bind_transaction(self, binding: TransactionBinding) -> TransactionBinding:
        """Record which backend owns a transaction; if it is recorded already, the recorded binding."""
        ...

    async def get_transaction(self, transaction_id: str) -> TransactionBinding | None: ...

    async def touch_transactions(self, last_used: dict[str, int]) -> None:
        """Transaction id -> when a statement of it was last sent (epoch ms)."""
        ...

    async def end_transactions(
        self,
        reason: str,
        at: int,
        ids: list[str] | None = None,
        backend: str | None = None,
        started_before: int | None = None,
        idle_since: int | None = None,
    ) -> list[str]:
        """End the open transactions that match every condition given (by id, by backend, started
        before, last used before); the ids ended."""
        ...

    async def open_transactions(self, backend: str | None = None) -> list[TransactionBinding]: ...

    # -- audit ------------------------------------------------------------------------------------
    async def record_audit(self, entry: AuditEntry) -> None: ...

    async def find_audit(
        self, actor: str | None = None, since_ms: int | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[int, list[AuditEntry]]:
        """(how many match, one page of them newest first)."""
        ...

    # -- drain ------------------------------------------------------------------------------------
    async def backend_work(self) -> dict[str, BackendWork]:
        """Per backend name: unfinished queries and open transactions, with the oldest of each."""
        ...

    # -- one health check per backend for the fleet -------------------------------------------------
    async def claim_health_check(self, backend: str, holder: str, now_ms: int, until_ms: int) -> bool:
        """Hold (or keep holding) the lease to check ``backend`` until ``until_ms``: True when
        ``holder`` has it, because it held it already, nobody did, or the last lease ran out."""
        ...

    async def publish_health_check(self, holder: str, check: SharedCheck) -> None:
        """The holder's latest check of a backend, for every other worker (ignored if the lease
        went to another holder meanwhile)."""
        ...

    async def health_checks(self) -> dict[str, SharedCheck]:
        """Every backend's latest published check, by backend name."""
        ...

    async def get_routing_rules(self) -> SharedRulesText | None:
        """The routing rules as last changed on any node; None before the first change."""
        ...

    async def put_routing_rules(self, rules: SharedRulesText) -> None:
        """Make ``rules`` the fleet's routing rules (and tell every worker: ``RULES_CHANGED``)."""
        ...

    async def watch_changes(self, on_change: Callable[[str], None]) -> None:
        """Call ``on_change`` with what changed (``BACKENDS_CHANGED``, ``ANYTHING_CHANGED``) whenever any
        worker or node changes it, until cancelled; returns at once where the store cannot tell, and
        readers poll."""
        ...

    async def release_health_checks(self, holder: str) -> None:
        """``holder`` stops: its leases end now, so that others take its backends over at once."""
        ...

    # -- cluster management: what the cluster manager did, and leases by name ----------------------
    async def cluster_records(self) -> dict[str, ClusterRecord]:
        """What the cluster manager last did to each cluster it moved, by backend name."""
        ...

    async def move_cluster(self, record: ClusterRecord, expected: frozenset[str | None] | None) -> bool:
        """Write ``record`` as its backend's, only if that backend's current state is one of ``expected``
        (None among them: it has no record yet; ``expected`` None: whatever it is); True when written.
        A compare-and-set in one step: of two workers or nodes moving the same cluster from the same
        state at once, exactly one succeeds."""
        ...

    async def forget_cluster(self, backend: str) -> None:
        """Drop the backend's record (the backend was deleted); nothing when it has none."""
        ...

    async def claim_lease(self, name: str, holder: str, now_ms: int, until_ms: int) -> bool:
        """Hold (or keep holding) the lease called ``name`` until ``until_ms``: True when ``holder`` has
        it, because it held it already, nobody did, or the last holder's ran out (before ``now_ms``);
        False while another holder's lease runs (``until_ms`` of it included)."""
        ...

    async def release_lease(self, name: str, holder: str) -> None:
        """``holder`` lets go of the lease called ``name`` (nothing when another holds it), so that
        another can take it at once."""
        ...

    # -- the result cache's shared tier ---------------------------------------------------------
    # Entries are shared by every node of a fleet on PostgreSQL and by the workers of one node on
    # SQLite. The in-memory store keeps no entries (its one worker's own tiers hold them) but keeps
    # purge marks.
    async def get_cached_result(self, key: str, now_ms: int) -> CachedResult | None:
        """The entry under ``key``; None when there is none or it expired (``expires_ms <= now_ms``)."""
        ...

    async def put_cached_result(self, entry: CachedResult) -> None:
        """Keep ``entry``, replacing any entry under its key."""
        ...

    async def purge_cached_results(self, group: str | None, now_ms: int) -> int:
        """Delete every entry (``group`` None) or the group's, and mark the purge (``group``, or
        ``"*"`` for all, at ``now_ms``) so that every worker drops what its own tiers made before it
        (``cache_purge_marks``); how many entries the store deleted."""
        ...

    async def cache_purge_marks(self) -> dict[str, int]:
        """Each purged routing group (``"*"``: all of them) -> when it was last purged (epoch ms)."""
        ...

    async def expire_cached_results(self, now_ms: int) -> int:
        """Delete the entries expired at ``now_ms``; how many."""
        ...

    async def cached_result_totals(self) -> tuple[int, int]:
        """(entries, the bytes of their blobs), expired ones not yet deleted included."""
        ...

    async def count_cache_words(self, since_ms: int) -> dict[tuple[str, str], int]:
        """(routing group, the cache's word) -> how many queries submitted at or after ``since_ms`` the
        history holds with that word (queries the cache had no word on are not counted)."""
        ...

    async def shared_secret(self, name: str) -> bytes:
        """The secret called ``name``: random, made by the first caller, the same for every worker and
        node of the store afterwards (the in-memory store: this process's)."""
        ...


async def seed_backends(store: Store, seeds: list[Backend]) -> None:
    """Make the configured backends exist as the file says, keeping the active flag operators set
    through the API."""
    existing = {b.name: b for b in await store.list_backends()}
    for seed in seeds:
        current = existing.get(seed.name)
        if current is None:
            try:
                await store.add_backend(seed)
            except DuplicateBackend:
                # Another node of the fleet, starting at the same moment, added it: from the same file.
                continue
        else:
            await store.update_backend(seed.model_copy(update={"active": current.active}))
