"""Observed health of backends: monitors, the health state machine, the checker."""

from gateway.health.checker import HealthChecker
from gateway.health.monitors import create_monitor
from gateway.health.state import BackendHealth, ClusterStats, Health

__all__ = ["BackendHealth", "ClusterStats", "Health", "HealthChecker", "create_monitor"]
