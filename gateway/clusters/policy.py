"""What one routing group's clusters should do next: the autoscaler's decision, from what it sees.

One step at a time per group, so that what a step changes is seen before the next:

- a cluster STARTING for longer than ``start_timeout`` is given up (stopped, marked failed), and the
  next one is tried;
- fewer started than the minimum (``min_clusters``, or a time window's), or queries waiting in the
  gateway (``scale_up_queued``) while no READY cluster has room for them, or utilisation above
  ``scale_up_utilisation`` for ``scale_up_after``: one more (a DRAINING one back to READY first;
  else a STOPPED one that did not fail lately), up to ``max_clusters``, one start at a time;
- a DRAINING cluster stops once it is drained (no query running, no transaction open: the store's
  count, over every node) and every node has had time to see it drain;
- utilisation under ``scale_down_utilisation`` (no query waiting) for ``idle_time``, and more clusters
  started than the minimum: the least busy READY one drains. With ``min_clusters: 0`` the last one
  goes too: scale to zero.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

from gateway.clusters.states import DRAINING, READY, STARTING, STOPPED, UNHEALTHY
from gateway.config import GroupScalingConfig, ScalingWindow

START, UNDRAIN, DRAIN, STOP, GIVE_UP = "start", "undrain", "drain", "stop", "give_up"


@dataclass(frozen=True, slots=True)
class ClusterView:
    name: str
    state: str
    since_ms: int
    """When it entered its recorded state (STARTING, DRAINING)."""
    running: int = 0
    """Queries it still runs (every node's, from the store), and any its own monitor reports."""
    transactions: int = 0
    capacity: int | None = None
    """Its max_running."""
    failed_ms: int | None = None
    """When a start of it last failed."""


@dataclass(frozen=True, slots=True)
class Action:
    verb: str
    cluster: str
    why: str


def minimum_now(settings: GroupScalingConfig, now: dt.datetime) -> int:
    """``min_clusters``, or more while a time window says so."""
    return max([settings.min_clusters, *(w.min_clusters for w in settings.windows if in_window(w, now))])


def in_window(window: ScalingWindow, now: dt.datetime) -> bool:
    local = now.astimezone(zoneinfo.ZoneInfo(window.timezone)) if window.timezone else now.astimezone()
    day, minute = local.strftime("%a").lower(), local.hour * 60 + local.minute
    start, end = _minutes(window.start), _minutes(window.end)
    if start <= end:
        return day in window.days and start <= minute < end
    # Past midnight: the evening part on one of its days, the morning part the day after one.
    yesterday = (local - dt.timedelta(days=1)).strftime("%a").lower()
    return (day in window.days and minute >= start) or (yesterday in window.days and minute < end)


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def utilisation(clusters: list[ClusterView]) -> float | None:
    """Running / Σ max_running of the READY clusters; None when one of them has no max_running."""
    ready = [cluster for cluster in clusters if cluster.state == READY]
    if not ready or any(cluster.capacity is None for cluster in ready):
        return None
    capacity = sum(cluster.capacity or 0 for cluster in ready)
    return sum(cluster.running for cluster in ready) / capacity if capacity else None


def plan(
    settings: GroupScalingConfig,
    clusters: list[ClusterView],
    queued: int,
    high_for: float,
    low_for: float,
    now_ms: int,
    settle_ms: int,
    minimum: int,
) -> Action | None:
    """The group's next step, if any (``high_for``/``low_for``: seconds its load has been above the
    scale-up or under the scale-down utilisation; ``settle_ms``: how long a drain must have lasted
    before the cluster may stop; ``minimum``: ``minimum_now``)."""
    timeout_ms = int(settings.start_timeout * 1000)
    for cluster in clusters:
        if cluster.state == STARTING and now_ms - cluster.since_ms > timeout_ms:
            return Action(GIVE_UP, cluster.name, f"not READY within {settings.start_timeout:g} s")
    started = [c for c in clusters if c.state in (READY, UNHEALTHY, STARTING)]
    starting = [c for c in clusters if c.state == STARTING]
    draining = [c for c in clusters if c.state == DRAINING]
    limit = settings.max_clusters if settings.max_clusters is not None else len(clusters)
    more = _why_more(settings, started, queued, high_for, minimum)
    if more is not None and not starting and len(started) < limit:
        if draining:
            return Action(UNDRAIN, _least_busy(draining).name, more)
        candidates = [
            c for c in clusters if c.state == STOPPED and (c.failed_ms is None or now_ms - c.failed_ms > timeout_ms)
        ]
        if candidates:
            return Action(START, candidates[0].name, more)
    for cluster in draining:
        if now_ms - cluster.since_ms >= settle_ms and cluster.running == 0 and cluster.transactions == 0:
            return Action(STOP, cluster.name, "drained")
    ready = [c for c in clusters if c.state == READY]
    if (
        more is None
        and not starting
        and not draining
        and queued == 0
        and len(started) > minimum
        and ready
        and low_for >= settings.idle_time
    ):
        return Action(DRAIN, _least_busy(ready).name, f"load under the scale-down mark for {settings.idle_time:g} s")
    return None


def _why_more(
    settings: GroupScalingConfig, started: list[ClusterView], queued: int, high_for: float, minimum: int
) -> str | None:
    if len(started) < minimum:
        return f"{len(started)} started, the minimum now is {minimum}"
    if queued >= settings.scale_up_queued and not any(_has_room(cluster) for cluster in started):
        # (A READY cluster with room takes them at the queue's next dispatch: no start for that.)
        return f"{queued} queries waiting in the gateway"
    if started and high_for >= settings.scale_up_after:
        return f"utilisation above {settings.scale_up_utilisation:g} for {high_for:.0f} s"
    return None


def _has_room(cluster: ClusterView) -> bool:
    return cluster.state == READY and (cluster.capacity is None or cluster.running < cluster.capacity)


def _least_busy(clusters: list[ClusterView]) -> ClusterView:
    return min(clusters, key=lambda cluster: (cluster.running, cluster.name))
