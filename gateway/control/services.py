"""What the control plane is handed: the worker's services it reads and changes. The node builds them
(``gateway.node.services.Services``, which has these and more) and hands them to the admin API and the
UI explicitly; the control plane names only what it uses, so it imports nothing of the node."""

from __future__ import annotations

from typing import Protocol

from gateway.auth.authenticator import Authenticator
from gateway.backends.health import HealthChecker
from gateway.backends.registry import BackendRegistry
from gateway.cache.results import ResultCache
from gateway.clusters.manager import ClusterManager
from gateway.config import GatewayConfig
from gateway.control.audit import AuditTrail
from gateway.control.backend_status import BackendStatus
from gateway.control.drain import DrainStatus
from gateway.control.readiness import Readiness
from gateway.dataplane import Proxy
from gateway.queries.admission import Admission
from gateway.queries.history import QueryHistory
from gateway.routing.estimates import Estimator
from gateway.routing.rules import GroupSelector
from gateway.routing.rules.shared import SharedRules
from gateway.store import BackendWork, Store
from gateway.store.backend import Backend
from observability.observer import Observer


class Services(Protocol):
    config: GatewayConfig
    store: Store
    registry: BackendRegistry
    health: HealthChecker
    history: QueryHistory
    selector: GroupSelector
    observer: Observer
    authenticator: Authenticator | None
    audit: AuditTrail
    admission: Admission
    estimator: Estimator
    shared_rules: SharedRules | None
    proxy: Proxy
    readiness: Readiness
    result_cache: ResultCache | None
    clusters: ClusterManager | None

    def backend_statuses(self, backends: list[Backend]) -> list[BackendStatus]: ...

    async def drain_status(self, name: str) -> DrainStatus | None: ...

    async def publish_backend_work(self) -> dict[str, BackendWork]: ...

    async def refresh_gauges(self) -> None: ...
