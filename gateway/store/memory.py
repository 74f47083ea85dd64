"""The store in this process's memory: ``store.url: memory://``.

For one worker that needs nothing kept (a quick trial, the in-process tests): it keeps the same
promises as the SQL store (``gateway.store.base.Store``), and loses everything when the process ends.
One exception: it keeps no result cache entries (the one worker's own tiers hold them), only the
cache's purge marks.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable

from gateway.store.backend import Backend
from gateway.store.contact import StoreContact
from gateway.store.records import (
    ALL_GROUPS,
    CLUSTER_DETAIL_LENGTH,
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
    count_queries,
)


class MemoryStore:
    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._backends: dict[str, Backend] = {}
        self._queries: dict[str, QueryRecord] = {}
        self._transactions: dict[str, TransactionBinding] = {}
        self._audit: list[AuditEntry] = []
        self._leases: dict[str, tuple[str, int]] = {}
        self._checks: dict[str, SharedCheck] = {}
        self._rules: SharedRulesText | None = None
        self._secrets: dict[str, bytes] = {}
        self._cache_purges: dict[str, int] = {}
        self._clusters: dict[str, ClusterRecord] = {}
        self._named_leases: dict[str, tuple[str, int]] = {}
        # Tests set this to make every call fail, as a store that is down does.
        self.failing: str | None = None
        self.contact = StoreContact()

    def _check(self) -> None:
        if self.failing is not None:
            raise StoreError(self.failing)
        self.contact.answered()

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        self._check()

    # -- backends ---------------------------------------------------------------------------
    async def list_backends(self) -> list[Backend]:
        self._check()
        return [self._backends[name] for name in sorted(self._backends)]

    async def get_backend(self, name: str) -> Backend | None:
        self._check()
        return self._backends.get(name)

    async def add_backend(self, backend: Backend) -> None:
        self._check()
        if backend.name in self._backends:
            raise DuplicateBackend(f"a backend named {backend.name!r} exists already")
        self._backends[backend.name] = backend

    async def update_backend(self, backend: Backend) -> bool:
        self._check()
        if backend.name not in self._backends:
            return False
        self._backends[backend.name] = backend
        return True

    async def delete_backend(self, name: str) -> bool:
        self._check()
        return self._backends.pop(name, None) is not None

    async def set_active(self, name: str, active: bool) -> bool:
        self._check()
        backend = self._backends.get(name)
        if backend is None:
            return False
        self._backends[name] = backend.model_copy(update={"active": active})
        return True

    # -- query history ----------------------------------------------------------------------
    async def record_queries(self, records: list[QueryRecord]) -> None:
        self._check()
        known = [r.query_id for r in records if r.query_id in self._queries]
        if known or len({r.query_id for r in records}) != len(records):
            raise DuplicateQuery(f"queries recorded already: {', '.join(known) or 'twice in one batch'}")
        for record in records:
            self._queries[record.query_id] = dataclasses.replace(record)

    async def finish_queries(self, outcomes: list[QueryOutcome]) -> None:
        self._check()
        for outcome in outcomes:
            record = self._queries.get(outcome.query_id)
            if record is not None and record.state is None:
                record.state = outcome.state
                record.error_name = outcome.error_name
                record.gateway_query_id = outcome.gateway_query_id or record.gateway_query_id
                record.finished_at = outcome.finished_at
                record.elapsed_ms = outcome.finished_at - record.submitted_at

    async def get_query(self, query_id: str) -> QueryRecord | None:
        self._check()
        record = self._queries.get(query_id)
        return None if record is None else dataclasses.replace(record)

    async def find_queries(
        self, where: QueryFilter, limit: int = 100, offset: int = 0
    ) -> tuple[int, list[QueryRecord]]:
        self._check()
        matching = [r for r in self._queries.values() if where.matches(r)]
        matching.sort(key=lambda r: (-r.submitted_at, r.query_id))
        return len(matching), [dataclasses.replace(r) for r in matching[offset : offset + limit]]

    async def purge_queries(self, older_than_ms: int) -> int:
        self._check()
        old = [query_id for query_id, r in self._queries.items() if r.submitted_at < older_than_ms]
        for query_id in old:
            del self._queries[query_id]
        for tid in [t for t, b in self._transactions.items() if b.ended_at is not None and b.ended_at < older_than_ms]:
            del self._transactions[tid]
        return len(old)

    async def query_stats(self, since_ms: int, until_ms: int, step_ms: int) -> list[QueryCount]:
        self._check()
        return count_queries(self._queries.values(), since_ms, until_ms, step_ms)

    async def unfinished_queries(self, backend: str | None, submitted_before: int, limit: int) -> list[QueryRecord]:
        self._check()
        found = [
            r
            for r in self._queries.values()
            if r.state is None and r.submitted_at < submitted_before and backend in (None, r.backend_name)
        ]
        found.sort(key=lambda r: r.submitted_at)
        return [dataclasses.replace(r) for r in found[:limit]]

    # -- transactions -------------------------------------------------------------------------
    async def bind_transaction(self, binding: TransactionBinding) -> TransactionBinding:
        self._check()
        known = self._transactions.setdefault(binding.transaction_id, dataclasses.replace(binding))
        return dataclasses.replace(known)

    async def get_transaction(self, transaction_id: str) -> TransactionBinding | None:
        self._check()
        found = self._transactions.get(transaction_id)
        return None if found is None else dataclasses.replace(found)

    async def touch_transactions(self, last_used: dict[str, int]) -> None:
        self._check()
        for tid, used in last_used.items():
            binding = self._transactions.get(tid)
            if binding is not None and binding.open:
                binding.last_used_at = used

    async def end_transactions(
        self,
        reason: str,
        at: int,
        ids: list[str] | None = None,
        backend: str | None = None,
        started_before: int | None = None,
        idle_since: int | None = None,
    ) -> list[str]:
        self._check()
        ended = []
        for binding in self._transactions.values():
            if (
                binding.open
                and (ids is None or binding.transaction_id in ids)
                and backend in (None, binding.backend_name)
                and (started_before is None or binding.started_at < started_before)
                and (idle_since is None or binding.last_used_at < idle_since)
            ):
                binding.ended_at, binding.end_reason = at, reason
                ended.append(binding.transaction_id)
        return ended

    async def open_transactions(self, backend: str | None = None) -> list[TransactionBinding]:
        self._check()
        found = [b for b in self._transactions.values() if b.open and backend in (None, b.backend_name)]
        return [dataclasses.replace(b) for b in sorted(found, key=lambda b: b.started_at)]

    # -- audit ------------------------------------------------------------------------------------
    async def record_audit(self, entry: AuditEntry) -> None:
        self._check()
        self._audit.append(dataclasses.replace(entry, id=len(self._audit) + 1))

    async def find_audit(
        self, actor: str | None = None, since_ms: int | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[int, list[AuditEntry]]:
        self._check()
        found = [
            e for e in reversed(self._audit) if actor in (None, e.actor) and (since_ms is None or e.at >= since_ms)
        ]
        return len(found), [dataclasses.replace(e) for e in found[offset : offset + limit]]

    # -- drain ------------------------------------------------------------------------------------
    async def backend_work(self) -> dict[str, BackendWork]:
        self._check()
        queries: dict[str, list[int]] = {}
        for record in self._queries.values():
            if record.state is None:
                queries.setdefault(record.backend_name, []).append(record.submitted_at)
        started: dict[str, list[int]] = {}
        for binding in self._transactions.values():
            if binding.open:
                started.setdefault(binding.backend_name, []).append(binding.started_at)
        return {
            name: BackendWork(
                len(queries.get(name, [])),
                min(queries.get(name, []), default=None),
                len(started.get(name, [])),
                min(started.get(name, []), default=None),
            )
            for name in queries.keys() | started.keys()
        }

    # -- one health check per backend ----------------------------------------------------------------
    async def claim_health_check(self, backend: str, holder: str, now_ms: int, until_ms: int) -> bool:
        self._check()
        current = self._leases.get(backend)
        if current is not None and current[0] != holder and current[1] >= now_ms:
            return False
        self._leases[backend] = (holder, until_ms)
        return True

    async def publish_health_check(self, holder: str, check: SharedCheck) -> None:
        self._check()
        if self._leases.get(check.backend_name, ("", 0))[0] == holder:
            self._checks[check.backend_name] = check

    async def health_checks(self) -> dict[str, SharedCheck]:
        self._check()
        return dict(self._checks)

    async def get_routing_rules(self) -> SharedRulesText | None:
        self._check()
        return self._rules

    async def put_routing_rules(self, rules: SharedRulesText) -> None:
        self._check()
        self._rules = rules

    async def watch_changes(self, on_change: Callable[[str], None]) -> None:
        return  # one worker: its own changes count at once

    async def release_health_checks(self, holder: str) -> None:
        self._check()
        for backend, (name, _) in list(self._leases.items()):
            if name == holder:
                del self._leases[backend]

    # -- cluster management: what the cluster manager did, and leases by name ----------------------
    # (Each call runs without awaiting: one worker's moves and claims cannot interleave.)
    async def cluster_records(self) -> dict[str, ClusterRecord]:
        self._check()
        return dict(self._clusters)

    async def move_cluster(self, record: ClusterRecord, expected: frozenset[str | None] | None) -> bool:
        self._check()
        current = self._clusters.get(record.backend)
        if expected is not None and (None if current is None else current.state) not in expected:
            return False
        if record.detail is not None and len(record.detail) > CLUSTER_DETAIL_LENGTH:
            record = dataclasses.replace(record, detail=record.detail[:CLUSTER_DETAIL_LENGTH])
        self._clusters[record.backend] = record
        return True

    async def forget_cluster(self, backend: str) -> None:
        self._check()
        self._clusters.pop(backend, None)

    async def claim_lease(self, name: str, holder: str, now_ms: int, until_ms: int) -> bool:
        self._check()
        current = self._named_leases.get(name)
        if current is not None and current[0] != holder and current[1] >= now_ms:
            return False
        self._named_leases[name] = (holder, until_ms)
        return True

    async def release_lease(self, name: str, holder: str) -> None:
        self._check()
        if self._named_leases.get(name, ("", 0))[0] == holder:
            del self._named_leases[name]

    # -- the result cache's shared tier ----------------------------------------------------------------
    # With memory:// there is one worker, and its own tiers of the result cache hold its entries
    # already: keeping them here too would only hold every result twice in one process. Purge marks
    # are kept, so that the cache reads them alike on every store.
    async def get_cached_result(self, key: str, now_ms: int) -> CachedResult | None:
        """None: the in-memory store keeps no entries (the worker's own tiers do)."""
        self._check()
        return None

    async def put_cached_result(self, entry: CachedResult) -> None:
        """Nothing is kept: the in-memory store keeps no entries (the worker's own tiers do)."""
        self._check()

    async def purge_cached_results(self, group: str | None, now_ms: int) -> int:
        """0 entries deleted (none are kept here); the purge mark is kept."""
        self._check()
        self._cache_purges[ALL_GROUPS if group is None else group] = now_ms
        return 0

    async def cache_purge_marks(self) -> dict[str, int]:
        self._check()
        return dict(self._cache_purges)

    async def expire_cached_results(self, now_ms: int) -> int:
        """0: no entries are kept here."""
        self._check()
        return 0

    async def cached_result_totals(self) -> tuple[int, int]:
        """(0, 0): no entries are kept here."""
        self._check()
        return 0, 0

    async def count_cache_words(self, since_ms: int) -> dict[tuple[str, str], int]:
        self._check()
        counts: dict[tuple[str, str], int] = {}
        for record in self._queries.values():
            if record.cache is not None and record.submitted_at >= since_ms:
                counts[(record.routing_group, record.cache)] = counts.get((record.routing_group, record.cache), 0) + 1
        return counts

    async def shared_secret(self, name: str) -> bytes:
        self._check()
        return self._secrets.setdefault(name, secrets.token_bytes(32))
