"""A cluster's state as operators see it: what the cluster manager last did to it, what its health
checks say, and what the operator wants.

                 start                  health checks pass
    STOPPED ───────────────▶ STARTING ─────────────────────▶ READY ◀──▶ UNHEALTHY
       ▲   not READY within start_timeout │                    │ load low for idle_time (or stop)
       ├──────────────────────────────────┘                    ▼
       │          stop issued                drained      DRAINING  (no new queries; running ones finish)
       └───────────────────── TERMINATING ◀────────────────────┘

    DEACTIVATED: the operator's (``active: false``); the manager never starts, stops or drains it.

A cluster without a scaler is managed by hand: READY or UNHEALTHY (its health), or DEACTIVATED. A
managed cluster the gateway never started is READY if its checks pass, else STOPPED; UNHEALTHY is a
started one that fails them.
"""

from __future__ import annotations

from gateway.backends.health.state import BackendHealth, Health
from gateway.store import ClusterRecord
from gateway.store.backend import Backend

STOPPED = "STOPPED"
STARTING = "STARTING"
READY = "READY"
UNHEALTHY = "UNHEALTHY"
DRAINING = "DRAINING"
TERMINATING = "TERMINATING"
DEACTIVATED = "DEACTIVATED"
STATES = (STOPPED, STARTING, READY, UNHEALTHY, DRAINING, TERMINATING, DEACTIVATED)

# The manager's own words (a cluster record's state); READY and UNHEALTHY are observed, never stored
# as more than "started".
TAKES_NO_QUERIES = frozenset({STOPPED, STARTING, DRAINING, TERMINATING})


def state_of(backend: Backend, health: BackendHealth | None, record: ClusterRecord | None) -> str:
    """``backend``'s state now."""
    if not backend.active:
        return DEACTIVATED
    healthy = health is not None and health.state == Health.HEALTHY
    recorded = record.state if record is not None else None
    if backend.scaler is None or recorded == READY:
        return READY if healthy else UNHEALTHY
    if recorded in (DRAINING, TERMINATING):
        return recorded
    if recorded == STARTING:
        return READY if healthy else STARTING
    # STOPPED, or never started by the gateway: unless it answers its checks (started by hand, or
    # before the gateway managed it), it is stopped.
    return READY if healthy else STOPPED
