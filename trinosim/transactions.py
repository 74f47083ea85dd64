"""Transactions as a Trino coordinator keeps them: an id is known only to the server that started
it, ends with COMMIT or ROLLBACK, and is aborted after ``transaction.idle-timeout`` without a
statement. A restarted server knows none (they live in memory)."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field

from trinosim.errors import TrinoError


def unknown_transaction(transaction_id: str) -> TrinoError:
    # Trino's TransactionManager words it so.
    return TrinoError(
        "UNKNOWN_TRANSACTION",
        f"Unknown transaction ID: {transaction_id}. Possibly expired? Commands ignored until end of transaction block",
    )


@dataclass
class Transaction:
    id: str
    created: float
    last_used: float
    active_queries: int = 0
    statements: list[str] = field(default_factory=list)


class TransactionManager:
    """Thread-safe: statements are planned in worker threads."""

    def __init__(self, idle_timeout: float) -> None:
        self.idle_timeout = idle_timeout
        self._open: dict[str, Transaction] = {}
        self._lock = threading.Lock()
        self.counters = {"started": 0, "committed": 0, "rolled_back": 0, "expired": 0}

    def begin(self) -> str:
        now = time.monotonic()
        transaction = Transaction(str(uuid.uuid4()), now, now)
        with self._lock:
            self._open[transaction.id] = transaction
            self.counters["started"] += 1
        return transaction.id

    def enter(self, transaction_id: str, query_id: str) -> None:
        """A statement of the transaction starts; raises UNKNOWN_TRANSACTION for an id this server
        does not know (never started here, ended, expired, or started before a restart)."""
        with self._lock:
            transaction = self._open.get(transaction_id)
            if transaction is None:
                raise unknown_transaction(transaction_id)
            transaction.active_queries += 1
            transaction.last_used = time.monotonic()
            transaction.statements.append(query_id)

    def leave(self, transaction_id: str) -> None:
        """A statement of the transaction ended: the idle clock starts again."""
        with self._lock:
            transaction = self._open.get(transaction_id)
            if transaction is not None:
                transaction.active_queries = max(0, transaction.active_queries - 1)
                transaction.last_used = time.monotonic()

    def end(self, transaction_id: str, committed: bool) -> None:
        with self._lock:
            if self._open.pop(transaction_id, None) is None:
                raise unknown_transaction(transaction_id)
            self.counters["committed" if committed else "rolled_back"] += 1

    def expire(self) -> list[str]:
        """Abort transactions idle (no statement running) for longer than the idle timeout."""
        cutoff = time.monotonic() - self.idle_timeout
        with self._lock:
            idle = [t.id for t in self._open.values() if t.active_queries == 0 and t.last_used < cutoff]
            for transaction_id in idle:
                del self._open[transaction_id]
            self.counters["expired"] += len(idle)
        return idle

    def to_json(self) -> list[dict[str, object]]:
        now = time.monotonic()
        with self._lock:
            return [
                {
                    "id": t.id,
                    "ageSeconds": round(now - t.created, 3),
                    "idleSeconds": round(now - t.last_used, 3),
                    "activeQueries": t.active_queries,
                    "statements": list(t.statements),
                }
                for t in self._open.values()
            ]
