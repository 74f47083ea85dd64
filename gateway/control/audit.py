"""The audit trail: every change through the admin API (and every refused attempt at one), stored
for ``GET /gateway/audit`` and logged as one structured line (logger ``gateway.control.audit``)."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from gateway.auth.principal import Principal
from gateway.control.api import models
from gateway.store import AuditEntry, ClusterRecord, Store, now_ms

log = logging.getLogger("gateway.control.audit")
# Audit lines are written whatever the gateway's log level (a quieter log must not lose them).
log.setLevel(logging.INFO)

# Who the audit trail names for what cluster management did by itself (an operator's start or stop is
# also in the trail under the operator's name, and its move names the operator in ``why``).
CLUSTER_MANAGER = Principal("cluster-manager", method="gateway")


class AuditTrail:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def record(
        self,
        principal: Principal,
        address: str,
        action: str,
        target: str | None,
        outcome: str = "done",
        before: Any = None,
        after: Any = None,
    ) -> AuditEntry:
        entry = AuditEntry(
            at=now_ms(),
            actor=principal.name,
            method=principal.method,
            address=address,
            action=action,
            target=target,
            outcome=outcome,
            before=None if before is None else orjson.dumps(before).decode(),
            after=None if after is None else orjson.dumps(after).decode(),
        )
        # The log line first: it is written even when the store is down.
        log.info("%s", orjson.dumps({"audit": models.AuditEntry.of(entry).model_dump(mode="json")}).decode())
        try:
            await self.store.record_audit(entry)
        except Exception as error:
            log.error("cannot store the audit entry (the log line above keeps it): %s", error)
        return entry

    async def cluster_moved(self, node: str, before: str | None, record: ClusterRecord) -> None:
        """Cluster management moved a cluster's record (docs/scaling.md): from which state, to which,
        and why; ``node`` is the worker that did it."""
        await self.record(
            CLUSTER_MANAGER,
            node,
            "cluster.move",
            record.backend,
            before=None if before is None else {"state": before},
            after={"state": record.state, "why": record.detail},
        )
