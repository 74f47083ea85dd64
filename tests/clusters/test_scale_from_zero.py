"""Cluster management through a running gateway, with trinosim clusters behind the command scaler:
a burst from zero starts a cluster and every query succeeds; an idle group drains and stops it; the
states on the way, as `trino-gateway backend list` shows them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.clusters.helpers import (
    A_LIFE_FROM_ZERO,
    CommandCluster,
    StateWatch,
    audited_moves,
    backend_list,
    moves_until_stopped,
    scaling_config,
    wait_for,
)
from tests.conftest import connect
from tests.inprocess import InProcessGateway
from trinosim.inprocess import LoopThread

pytestmark = pytest.mark.slow  # trinosim processes, started by the scaler


@pytest.fixture
def clusters(tmp_path: Path) -> Iterator[list[CommandCluster]]:
    made = [CommandCluster(tmp_path, "etl-1", "etl"), CommandCluster(tmp_path, "etl-2", "etl")]
    yield made
    for cluster in made:
        cluster.kill()


def test_a_burst_from_zero_starts_a_cluster_and_every_query_succeeds_then_it_stops_when_idle(
    loop_thread: LoopThread, clusters: list[CommandCluster]
):
    with InProcessGateway(loop_thread, scaling_config(clusters)) as gateway, StateWatch(gateway) as watch:
        assert backend_list(gateway) == {"etl-1": "STOPPED", "etl-2": "STOPPED"}
        first_row: list[float] = []
        began = time.monotonic()

        def query(number: int) -> list[Any]:
            with connect(gateway.url, user=f"user-{number % 5}", request_timeout=120) as conn:
                cursor = conn.cursor()
                cursor.execute(f"SELECT {number} AS n, count(*) FROM tpch.tiny.nation")
                row = cursor.fetchone()
                first_row.append(time.monotonic() - began)
                return [row, *cursor.fetchall()]

        with ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(query, range(50)))
        assert [rows[0][0] for rows in answers] == list(range(50))
        assert all(rows[0][1] == 25 for rows in answers)
        print(f"\nfirst submission to first row, from zero: {min(first_row):.2f} s; last: {max(first_row):.2f} s")
        # One cluster was enough to start: one start, of the first one.
        assert clusters[0].start_count() == 1 and clusters[1].start_count() == 0
        # Idle for idle_time: drained, then stopped.
        wait_for("etl-1 stopped", lambda: backend_list(gateway)["etl-1"] == "STOPPED" and not clusters[0].answers(), 60)

        # Each move the cluster manager made is in the audit trail, in order, with why.
        moves = moves_until_stopped(gateway, "etl-1")
        assert [(move.before, move.after) for move in moves] == A_LIFE_FROM_ZERO, moves
        assert "waiting" in moves[0].why and moves[-1].why == "stopped", moves
        assert audited_moves(gateway, "etl-2") == []
    states = watch.seen["etl-1"]
    assert states[0] == "STOPPED" and states[-1] == "STOPPED"
    for state in ("STARTING", "READY", "DRAINING"):
        assert state in states, states
    assert states.index("STARTING") < states.index("READY") < states.index("DRAINING")
    # It ran nothing when it was stopped.
    stopped = [json.loads(line) for line in clusters[0].stopped_with()]
    assert stopped and stopped[-1].get("running", 0) == 0 and stopped[-1].get("queued", 0) == 0
