"""Which backend owns each open transaction: a Trino transaction exists on the one coordinator that
started it, so every statement of it must go there (and never anywhere else).

    START TRANSACTION's answer carries X-Trino-Started-Transaction-Id ──▶ bound to that backend
    statements carrying X-Trino-Transaction-Id: <id> ────────────────────▶ routed to the owner
    X-Trino-Clear-Transaction-Id (COMMIT, ROLLBACK) ─┐
    the owner answers UNKNOWN_TRANSACTION ───────────┼────────────────────▶ ended
    the owner restarted; idle for ``idle_timeout`` ──┘

Bindings are written to the store before the answer that carries the id reaches the client, so the
client's next statement finds its owner from any worker, a restarted gateway or another gateway
node on the same store. Each worker keeps the bindings it has used in memory.
"""

from __future__ import annotations

import asyncio
import logging
import time

from gateway.store import Store, TransactionBinding, now_ms
from observability import metrics

log = logging.getLogger("gateway.queries.transactions")

COMMITTED, ROLLED_BACK, UNKNOWN, RESTARTED, IDLE = (
    "committed",
    "rolled back",
    "unknown to its backend",
    "backend restarted",
    "idle",
)


def is_transaction_id(value: str | None) -> bool:
    """A real transaction id (clients send ``NONE`` outside transactions)."""
    return bool(value) and value.upper() != "NONE"  # type: ignore[union-attr]


_CONTROL_WORDS = ("START", "COMMIT", "ROLLBACK")


def transaction_control(sql: str) -> str | None:
    """START, COMMIT or ROLLBACK: the statements whose answers start or end a transaction (Trino sets
    the transaction headers on no other), so only their answers are read for them."""
    text = sql.lstrip()
    while text.startswith(("--", "/*")):
        end = text.find("\n") if text.startswith("--") else text.find("*/")
        if end == -1:
            return None
        text = text[end + (1 if text.startswith("--") else 2) :].lstrip()
    word = text[:9].split(None, 1)[0].upper() if text else ""
    return word if word in _CONTROL_WORDS else None


class TransactionBindings:
    def __init__(self, store: Store, idle_timeout: float, touch_interval: float = 1.0) -> None:
        self.store = store
        self.idle_timeout = idle_timeout
        self.touch_interval = touch_interval
        self._known: dict[str, TransactionBinding] = {}
        self._touched: dict[str, int] = {}

    async def owner(self, transaction_id: str) -> TransactionBinding | None:
        """The binding of ``transaction_id`` (open or ended), or None when the gateway never saw it start."""
        binding = self._known.get(transaction_id)
        if binding is not None:
            return binding
        try:
            binding = await self.store.get_transaction(transaction_id)
        except Exception as error:
            log.error("cannot look up transaction %s in the store: %s", transaction_id, error)
            return None
        if binding is not None and binding.open:
            self._known[transaction_id] = binding
        return binding

    async def started(self, transaction_id: str, backend_name: str, backend_url: str, query_id: str) -> None:
        """A backend's answer started the transaction: it owns it."""
        if transaction_id in self._known:
            return
        now = now_ms()
        binding = TransactionBinding(transaction_id, backend_name, backend_url, now, now, started_by=query_id)
        try:
            binding = await self.store.bind_transaction(binding)
        except Exception as error:
            # This worker still routes the transaction right; others ask the backends in vain.
            log.error(
                "cannot record transaction %s on backend %s in the store: %s", transaction_id, backend_name, error
            )
        self._known[transaction_id] = binding
        metrics.transaction_event(backend_name, "started")
        log.info("transaction %s started on backend %s", transaction_id, backend_name)

    def used(self, transaction_id: str) -> None:
        """A statement of the transaction was sent (written to the store within ``touch_interval``)."""
        self._touched[transaction_id] = now_ms()

    async def ended(self, transaction_id: str, reason: str) -> None:
        binding = self._known.pop(transaction_id, None)
        self._touched.pop(transaction_id, None)
        try:
            ended = await self.store.end_transactions(reason, now_ms(), ids=[transaction_id])
        except Exception as error:
            log.error("cannot record the end of transaction %s in the store: %s", transaction_id, error)
            return
        if ended:
            backend = binding.backend_name if binding is not None else "unknown"
            metrics.transaction_event(backend, reason.replace(" ", "_"))
            log.info("transaction %s ended: %s", transaction_id, reason)

    async def backend_restarted(self, backend: str, started_at_ms: int) -> None:
        """Transactions the backend held before it restarted are gone with its memory."""
        for transaction_id in [t for t, b in self._known.items() if b.backend_name == backend]:
            del self._known[transaction_id]
        try:
            ended = await self.store.end_transactions(
                RESTARTED, now_ms(), backend=backend, started_before=started_at_ms
            )
        except Exception as error:
            log.error("cannot end the transactions of restarted backend %s: %s", backend, error)
            return
        for _ in ended:
            metrics.transaction_event(backend, "backend_restarted")
        if ended:
            log.warning("backend %s restarted: its %d open transactions are gone", backend, len(ended))

    def open_count(self) -> int:
        return len(self._known)

    async def housekeeping_forever(self) -> None:
        """Write when transactions were last used; end those idle for ``idle_timeout``."""
        expire_every = min(30.0, self.idle_timeout / 2)
        last_expiry = time.monotonic()
        while True:
            await asyncio.sleep(self.touch_interval)
            touched, self._touched = self._touched, {}
            try:
                await self.store.touch_transactions(touched)
                if time.monotonic() - last_expiry >= expire_every:
                    last_expiry = time.monotonic()
                    idle_since = now_ms() - int(self.idle_timeout * 1000)
                    for transaction_id in await self.store.end_transactions(IDLE, now_ms(), idle_since=idle_since):
                        self._known.pop(transaction_id, None)
                        log.info("transaction %s ended: idle for %.0f s", transaction_id, self.idle_timeout)
            except Exception as error:
                self._touched = {**touched, **self._touched}
                log.error("cannot update transactions in the store: %s", error)
