"""The autoscaler's step for one routing group (gateway.clusters.policy), from what it sees."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.clusters.policy import (
    DRAIN,
    GIVE_UP,
    START,
    STOP,
    UNDRAIN,
    Action,
    ClusterView,
    in_window,
    minimum_now,
    plan,
    utilisation,
)
from gateway.config import GroupScalingConfig, ScalingWindow

NOW = 1_000_000_000
SETTLE = 11_000


def settings(**values) -> GroupScalingConfig:
    return GroupScalingConfig(**{"idle_time": 30, "start_timeout": 120, **values})


def view(name: str, state: str, since: int = NOW - 60_000, **values) -> ClusterView:
    return ClusterView(name, state, since, **values)


def step(config: GroupScalingConfig, clusters, queued=0, high=0.0, low=0.0, minimum=None) -> Action | None:
    return plan(config, clusters, queued, high, low, NOW, SETTLE, config.min_clusters if minimum is None else minimum)


def test_a_query_waiting_for_a_group_at_zero_starts_its_first_stopped_cluster():
    action = step(settings(), [view("a", "STOPPED"), view("b", "STOPPED")], queued=1)
    assert action is not None and (action.verb, action.cluster) == (START, "a")
    assert "1 queries waiting" in action.why


def test_queries_waiting_start_no_cluster_while_a_ready_one_has_room():
    assert step(settings(), [view("a", "READY"), view("b", "STOPPED")], queued=10) is None  # no max_running
    roomy = [view("a", "READY", running=3, capacity=4), view("b", "STOPPED")]
    assert step(settings(), roomy, queued=10) is None
    full = [view("a", "READY", running=4, capacity=4), view("b", "STOPPED")]
    assert step(settings(), full, queued=10).verb == START


def test_one_start_at_a_time():
    assert step(settings(), [view("a", "STARTING", since=NOW - 1000), view("b", "STOPPED")], queued=50) is None


def test_a_cluster_not_ready_within_the_start_timeout_is_given_up_and_the_next_one_tried():
    clusters = [view("a", "STARTING", since=NOW - 121_000), view("b", "STOPPED")]
    assert step(settings(), clusters, queued=5) == Action(GIVE_UP, "a", "not READY within 120 s")
    failed = [view("a", "STOPPED", failed_ms=NOW - 1000), view("b", "STOPPED")]
    assert step(settings(), failed, queued=5).cluster == "b"


def test_a_cluster_that_failed_lately_is_not_tried_again_before_the_start_timeout():
    assert step(settings(), [view("a", "STOPPED", failed_ms=NOW - 1000)], queued=5) is None
    assert step(settings(), [view("a", "STOPPED", failed_ms=NOW - 121_000)], queued=5).verb == START


def test_the_minimum_is_kept_and_max_clusters_never_passed():
    assert step(settings(min_clusters=1), [view("a", "STOPPED")]).verb == START
    full = [view("a", "READY", running=1, capacity=1), view("b", "STOPPED")]
    assert step(settings(max_clusters=1), full, queued=10) is None
    assert step(settings(max_clusters=2), full, queued=10) == Action(START, "b", "10 queries waiting in the gateway")


def test_a_draining_cluster_goes_back_to_ready_before_another_starts():
    clusters = [view("a", "DRAINING"), view("b", "STOPPED")]
    assert step(settings(), clusters, queued=3).verb == UNDRAIN


def test_a_drained_cluster_stops_only_after_every_node_had_time_to_see_it_drain():
    assert step(settings(), [view("a", "DRAINING", since=NOW - 1000)]) is None
    assert step(settings(), [view("a", "DRAINING", since=NOW - 20_000, running=1)]) is None
    assert step(settings(), [view("a", "DRAINING", since=NOW - 20_000, transactions=1)]) is None
    assert step(settings(), [view("a", "DRAINING", since=NOW - 20_000)]) == Action(STOP, "a", "drained")


def test_an_idle_group_drains_its_least_busy_cluster_after_the_idle_time_down_to_zero():
    clusters = [view("a", "READY", running=2), view("b", "READY", running=0)]
    assert step(settings(), clusters, low=29) is None
    assert step(settings(), clusters, low=30).cluster == "b"
    assert step(settings(), [view("a", "READY")], low=31).verb == DRAIN  # min_clusters 0: scale to zero
    assert step(settings(min_clusters=1), [view("a", "READY")], low=300) is None


def test_of_equally_busy_clusters_the_one_started_last_drains():
    # (The one that has run longest stays: a group's minimum is not swapped for the cluster its load
    # added.)
    clusters = [view("a", "READY", since=NOW - 60_000), view("b", "READY", since=NOW - 10_000)]
    assert step(settings(min_clusters=1), clusters, low=30) == Action(
        DRAIN, "b", "load under the scale-down mark for 30 s"
    )
    clusters = [view("a", "READY", since=NOW - 60_000), view("b", "READY", since=NOW - 10_000, running=1)]
    assert step(settings(min_clusters=1), clusters, low=30).cluster == "a"


def test_nothing_drains_while_queries_wait_or_a_cluster_starts():
    clusters = [view("a", "READY", running=1, capacity=1), view("b", "READY", running=1, capacity=1)]
    assert step(settings(), clusters, queued=1, low=100) is None  # (both started: no third to start)
    starting = [view("a", "READY"), view("b", "STARTING", since=NOW - 1000)]
    assert step(settings(), starting, low=100) is None


def test_sustained_high_utilisation_starts_one_more():
    clusters = [view("a", "READY", running=9, capacity=10), view("b", "STOPPED")]
    assert step(settings(scale_up_after=30), clusters, high=10) is None
    assert step(settings(scale_up_after=30), clusters, high=31).verb == START
    assert utilisation(clusters) == 0.9
    assert utilisation([view("a", "READY", running=1)]) is None  # no max_running: unknown


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        ("2026-12-07T09:00:00+00:00", True),  # a Monday
        ("2026-12-07T07:59:00+00:00", False),
        ("2026-12-07T18:00:00+00:00", False),
        ("2026-12-06T09:00:00+00:00", False),  # a Sunday
    ],
)
def test_office_hours_raise_the_minimum(moment, inside):
    window = ScalingWindow(
        days=["mon", "tue", "wed", "thu", "fri"], start="08:00", end="18:00", min_clusters=2, timezone="UTC"
    )
    config = settings(windows=[window])
    now = dt.datetime.fromisoformat(moment)
    assert in_window(window, now) is inside
    assert minimum_now(config, now) == (2 if inside else 0)


def test_a_window_past_midnight_covers_the_morning_after():
    window = ScalingWindow(days=["sun"], start="22:00", end="02:00", min_clusters=1, timezone="UTC")
    assert in_window(window, dt.datetime.fromisoformat("2026-12-06T23:00:00+00:00"))  # Sunday evening
    assert in_window(window, dt.datetime.fromisoformat("2026-12-07T01:00:00+00:00"))  # Monday morning
    assert not in_window(window, dt.datetime.fromisoformat("2026-12-07T23:00:00+00:00"))
