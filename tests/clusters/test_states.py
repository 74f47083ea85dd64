"""A cluster's state from its record, its health and its active flag (gateway.clusters.states)."""

from __future__ import annotations

from gateway.backends.health.state import BackendHealth, Health
from gateway.clusters.states import state_of
from gateway.store import ClusterRecord
from gateway.store.backend import Backend, BackendScaler

SCALER = BackendScaler(kind="command", start="true", stop="true")
NOW = 1_000_000_000


def backend(scaler: BackendScaler | None = SCALER, active: bool = True) -> Backend:
    return Backend(name="etl-1", proxy_to="http://127.0.0.1:1", routing_group="etl", scaler=scaler, active=active)


def health(state: Health, checked: int | None = NOW, failures: int = 0) -> BackendHealth:
    return BackendHealth("etl-1", state=state, last_check_ms=checked, consecutive_failures=failures)


def record(state: str, since: int = NOW - 1000) -> ClusterRecord:
    return ClusterRecord("etl-1", state, since)


def test_a_cluster_without_a_scaler_is_ready_or_unhealthy_by_its_checks_or_deactivated():
    assert state_of(backend(None), health(Health.HEALTHY), None) == "READY"
    assert state_of(backend(None), health(Health.UNHEALTHY), None) == "UNHEALTHY"
    assert state_of(backend(None, active=False), health(Health.HEALTHY), None) == "DEACTIVATED"
    assert state_of(backend(active=False), None, record("READY")) == "DEACTIVATED"


def test_a_managed_cluster_never_started_by_the_gateway_is_ready_only_while_it_answers():
    assert state_of(backend(), health(Health.HEALTHY), None) == "READY"
    assert state_of(backend(), health(Health.PENDING), None) == "STOPPED"
    assert state_of(backend(), None, None) == "STOPPED"


def test_a_started_one_is_ready_once_a_check_since_its_start_passes():
    assert state_of(backend(), health(Health.PENDING), record("STARTING")) == "STARTING"
    assert state_of(backend(), health(Health.HEALTHY), record("STARTING")) == "READY"
    # Still HEALTHY from before it was started: that check says nothing of this start.
    assert state_of(backend(), health(Health.HEALTHY, checked=NOW - 2000), record("STARTING")) == "STARTING"
    assert state_of(backend(), health(Health.UNHEALTHY), record("READY")) == "UNHEALTHY"


def test_a_stopped_one_is_not_ready_while_its_health_still_says_what_it_was_before_the_stop():
    # The check before the stop passed; the health state flips only after failure_threshold failures.
    assert state_of(backend(), health(Health.HEALTHY, checked=NOW - 2000), record("STOPPED")) == "STOPPED"
    assert state_of(backend(), health(Health.HEALTHY, failures=1), record("STOPPED")) == "STOPPED"
    # Started by hand since: its checks pass again.
    assert state_of(backend(), health(Health.HEALTHY), record("STOPPED")) == "READY"


def test_draining_and_terminating_are_the_managers_word_whatever_the_checks_say():
    assert state_of(backend(), health(Health.HEALTHY), record("DRAINING")) == "DRAINING"
    assert state_of(backend(), health(Health.UNHEALTHY), record("TERMINATING")) == "TERMINATING"
