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


def state_of(backend: Backend, health: BackendHealth | None, record: ClusterRecord | None) -> str:
    """``backend``'s state now."""
    if not backend.active:
        return DEACTIVATED
    healthy = health is not None and health.state == Health.HEALTHY
    if backend.scaler is None or (record is not None and record.state == READY):
        return READY if healthy else UNHEALTHY
    if record is None:
        # Never started by the gateway: unless it answers its checks (started by hand, or before the
        # gateway managed it), it is stopped.
        return READY if healthy else STOPPED
    if record.state in (DRAINING, TERMINATING):
        return record.state
    # STARTING or STOPPED: READY only once a check *since* passed. The health state lags (a stopped
    # cluster stays HEALTHY until failure_threshold checks failed): the check before the stop says
    # nothing about a cluster stopped since, nor one of a cluster before its start.
    if healthy and _passed_since(health, record.since_ms):
        return READY
    return record.state


def _passed_since(health: BackendHealth | None, since_ms: int) -> bool:
    """Whether ``health``'s last check passed, and came after ``since_ms``."""
    return (
        health is not None
        and health.consecutive_failures == 0
        and health.last_check_ms is not None
        and health.last_check_ms > since_ms
    )
