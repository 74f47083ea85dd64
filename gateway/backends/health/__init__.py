"""Observed health of backends: monitors, the health state machine, the checker."""

from gateway.backends.health.checker import HealthChecker
from gateway.backends.health.monitors import create_monitor
from gateway.backends.health.state import BackendHealth, ClusterStats, Health

__all__ = ["BackendHealth", "ClusterStats", "Health", "HealthChecker", "create_monitor"]
