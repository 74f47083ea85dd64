"""Admission control as operators see it: per routing group, the queries waiting in the gateway and
the group's queue settings; per backend, the slots in use and its ``max_running``. Read by
``/gateway/health``, the JMX view (``trino.gateway:name=Admission``) and the UI's overview; computed
from ``gateway.queries.admission.Admission`` on demand, never stored.

On SQLite or PostgreSQL the queue and the slots are those of every worker and node on the store: the
figures are the store's, read each second by the worker that answers (``worker`` names it). On the
in-memory store (one worker) they are that worker's own, as they stand.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from gateway.config import GroupConfig
from gateway.queries.admission import Admission
from gateway.store.backend import Backend
from observability.metrics import QUEUED_USERS_SHOWN


def worker_name() -> str:
    """This worker process: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class GroupQueue:
    """The queries of one routing group waiting in this worker, and how the group queues them."""

    group: str
    waiting: int
    by_user: list[tuple[str | None, int]]
    """(user, waiting) of the users with most waiting, at most ``QUEUED_USERS_SHOWN`` (as the gauge);
    user None: queries sent with no user."""
    other_users: int
    """Waiting queries of the users not in ``by_user``."""
    settings: GroupConfig


def group_queues(
    admission: Admission, groups: Iterable[str], shown: Callable[[str | None], bool] = lambda user: True
) -> dict[str, GroupQueue]:
    """The queue of every group in ``groups``, of every configured group and of every group that has
    queries waiting. Users for whom ``shown`` is false are counted among the others (a caller who may
    not see every query sees no other user's name)."""
    counts: dict[str, dict[str | None, int]] = {name: {} for name in (*admission.groups, *groups)}
    for (group, user), count in admission.queued_by_group_and_user().items():
        counts.setdefault(group, {})[user or None] = count
    out = {}
    for group in sorted(counts):
        users = sorted(counts[group].items(), key=lambda pair: (-pair[1], pair[0] or ""))
        named = [pair for pair in users if shown(pair[0])][:QUEUED_USERS_SHOWN]
        waiting = sum(count for _, count in users)
        out[group] = GroupQueue(
            group,
            waiting,
            named,
            waiting - sum(count for _, count in named),
            admission.groups.get(group) or GroupConfig(),
        )
    return out


def jmx_attributes(admission: Admission, backends: list[Backend]) -> dict[str, Any]:
    """The attributes of the ``Admission`` MBean: totals, then waiting queries per group
    (``WaitingQueries.<group>``, every group of ``backends`` and every configured one), slots in use
    per backend (``RunningSlots.<backend>``) and the backends' limits where they have one
    (``MaxRunning.<backend>``)."""
    queues = group_queues(admission, (backend.routing_group for backend in backends))
    running = {backend.name: admission.running.get(backend.name, 0) for backend in backends}
    attributes: dict[str, Any] = {
        "Worker": worker_name(),
        "WaitingQueries": sum(queue.waiting for queue in queues.values()),
        "RunningSlots": sum(admission.running.values()),
    }
    attributes.update({f"WaitingQueries.{group}": queue.waiting for group, queue in queues.items()})
    attributes.update({f"RunningSlots.{name}": count for name, count in sorted(running.items())})
    attributes.update(
        {
            f"MaxRunning.{b.name}": b.max_running
            for b in sorted(backends, key=lambda b: b.name)
            if b.max_running is not None
        }
    )
    return attributes
