"""A backend's observed health, kept apart from the operator's intent (the ``active`` flag).

    PENDING ──success──▶ HEALTHY ──failure * failure_threshold──▶ UNHEALTHY
       │                    ▲                                        │
       └─failure * threshold┴──────success * success_threshold───────┘

One slow or failed check does not flip a cluster: it takes ``failure_threshold`` failures in a row
to leave HEALTHY and ``success_threshold`` successes in a row to come back. A cluster that answers
``starting: true`` stays where it is if it never was healthy, and counts as failing otherwise.

Failed proxied requests count as failures too, and they are also counted on their own: a passing
check does not erase them, only an answered poll does. So a cluster whose health
endpoint answers while its queries hang still leaves rotation after ``failure_threshold`` failed
requests, and, once checks bring it back, leaves again at the first failed request until one of
its requests is answered.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum


class Health(StrEnum):
    PENDING = "PENDING"
    HEALTHY = "HEALTHY"
    UNHEALTHY = "UNHEALTHY"


@dataclass
class ClusterStats:
    """What a monitor learnt about a cluster; None where the monitor cannot tell."""

    running: int | None = None
    queued: int | None = None
    workers: int | None = None
    uptime: float | None = None
    """Seconds since the cluster started (``/v1/info``): when it goes back, the cluster restarted."""


@dataclass
class BackendHealth:
    name: str
    failure_threshold: int = 2
    success_threshold: int = 2
    state: Health = Health.PENDING
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    # Failed proxied requests since the last answered poll; checks do not reset it.
    request_failures: int = 0
    last_check_ms: int | None = None
    last_error: str | None = None
    stats: ClusterStats = field(default_factory=ClusterStats)
    # Queries routed here since the last check: a burst must not all go to the cluster that
    # looked least busy at the last check.
    routed_since_check: int = 0
    # Exponentially weighted averages of proxied requests: latency of submissions and checks
    # (seconds) and the failure rate (0..1).
    latency: float = 0.0
    error_rate: float = 0.0

    @property
    def routable(self) -> bool:
        return self.state == Health.HEALTHY

    def succeeded(self, stats: ClusterStats | None) -> None:
        self._checked()
        self.consecutive_failures = 0
        self.consecutive_successes += 1
        if stats is not None:
            self.stats = stats
            self.routed_since_check = 0
        if self.state == Health.PENDING or (
            self.state == Health.UNHEALTHY and self.consecutive_successes >= self.success_threshold
        ):
            self.state = Health.HEALTHY
        if self.state == Health.HEALTHY:
            # While it is still UNHEALTHY, the error that took it out stays readable.
            self.last_error = None

    def failed(self, error: str) -> None:
        self._checked()
        self.last_error = error
        self.consecutive_successes = 0
        self.consecutive_failures += 1
        if self.consecutive_failures >= self.failure_threshold:
            self.state = Health.UNHEALTHY

    def request_failed(self, error: str) -> None:
        self.request_failures += 1
        self.failed(error)
        if self.request_failures >= self.failure_threshold:
            self.state = Health.UNHEALTHY

    def request_answered(self) -> None:
        self.request_failures = 0

    def starting(self) -> None:
        if self.state == Health.PENDING:
            self._checked()
            self.last_error = "the cluster reports it is still starting"
        else:
            self.failed("the cluster reports it is still starting")

    def observe_request(self, seconds: float | None, ok: bool, alpha: float = 0.2) -> None:
        """Fold one proxied request into the latency and error averages."""
        if seconds is not None:
            self.latency = seconds if self.latency == 0.0 else (1 - alpha) * self.latency + alpha * seconds
        self.error_rate = (1 - alpha) * self.error_rate + alpha * (0.0 if ok else 1.0)

    def _checked(self) -> None:
        self.last_check_ms = int(time.time() * 1000)
