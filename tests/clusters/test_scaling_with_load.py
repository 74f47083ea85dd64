"""Cluster management under a sustained load, through a running gateway with trinosim clusters behind
the command scaler: a second cluster starts when one is full, and is drained and stopped when the load
ends, with no query failed or lost; a draining cluster with a transaction open is not stopped until
the transaction ends. What each cluster ran when it was stopped is read at the cluster."""

from __future__ import annotations

import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from trino.transaction import IsolationLevel

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


def stopped_idle(cluster: CommandCluster) -> None:
    """Every stop of ``cluster`` found it running and queueing nothing (as it said at that moment)."""
    loads = [json.loads(line) for line in cluster.stopped_with()]
    assert loads, f"{cluster.name} was never stopped"
    for load in loads:
        assert load.get("running") == 0 and load.get("queued") == 0, (cluster.name, load)


def test_sustained_load_starts_a_second_cluster_which_drains_and_stops_after_it(
    loop_thread: LoopThread, tmp_path: Path, made: list[CommandCluster]
):
    made += [CommandCluster(tmp_path, f"etl-{n}", "etl", max_running=4) for n in (1, 2)]
    etl_1, etl_2 = made
    config = scaling_config(made, min_clusters=1, scale_up_queued=1)
    with InProcessGateway(loop_thread, config) as gateway, StateWatch(gateway) as watch:
        wait_for("etl-1 READY (the minimum)", lambda: backend_list(gateway)["etl-1"] == "READY", 30)
        assert backend_list(gateway)["etl-2"] == "STOPPED" and etl_2.start_count() == 0

        until = time.monotonic() + 10

        def client(number: int) -> int:
            """Queries of 1 s, one after another, until the load ends: how many it ran."""
            ran = 0
            while time.monotonic() < until:
                options: dict[str, Any] = {"session_properties": {"sim_run_time": "1s"}, "request_timeout": 60}
                with connect(gateway.url, user=f"user-{number}", **options) as conn:
                    cursor = conn.cursor()
                    cursor.execute(f"SELECT {number} AS n, count(*) FROM tpch.tiny.nation")
                    assert cursor.fetchall() == [[number, 25]]
                ran += 1
            return ran

        began = time.monotonic()
        with ThreadPoolExecutor(12) as pool:
            ran = list(pool.map(client, range(12)))  # (a query that failed fails the test here)
        print(f"\n{sum(ran)} queries of 1 s by 12 clients in {time.monotonic() - began:.1f} s")
        assert etl_2.start_count() == 1
        assert "READY" in watch.seen["etl-2"]
        # The load ended: etl-2 drains and stops; etl-1 stays, the group's minimum.
        wait_for("etl-2 stopped", lambda: backend_list(gateway)["etl-2"] == "STOPPED" and not etl_2.answers(), 30)
        assert backend_list(gateway)["etl-1"] == "READY" and etl_1.answers()
        queries = gateway.queries(limit=1000)
        with urllib.request.urlopen(f"{etl_1.url}/_sim/load", timeout=5) as answer:
            etl_1_load = json.loads(answer.read())
    states = watch.seen["etl-2"]
    assert states.index("STARTING") < states.index("READY") < states.index("DRAINING") < len(states) - 1, states
    assert states[-1] == "STOPPED", states
    assert watch.seen["etl-1"][-1] == "READY" and "DRAINING" not in watch.seen["etl-1"], watch.seen["etl-1"]
    assert etl_1.start_count() == 1 and etl_2.start_count() == 1
    # etl-2 took queries (it says so itself, at its stop), and none ran when it was stopped.
    stopped_idle(etl_2)
    etl_2_load = json.loads(etl_2.stopped_with()[-1])
    assert etl_2_load["completed"] > 0
    # The gateway kept each to its max_running (the most that ran at once, at the cluster).
    assert etl_1_load["peak_running"] <= 4 and etl_2_load["peak_running"] <= 4, (etl_1_load, etl_2_load)
    # Every query the gateway saw succeeded, on one of the two, and never over the limit of 4.
    records = queries["queries"]
    assert len(records) == sum(ran)
    assert {record["state"] for record in records} == {"FINISHED"}, {record["state"] for record in records}
    assert {record["backend"] for record in records} == {"etl-1", "etl-2"}


def test_a_draining_cluster_with_a_transaction_open_is_stopped_only_once_it_commits(
    loop_thread: LoopThread, tmp_path: Path, made: list[CommandCluster]
):
    made.append(CommandCluster(tmp_path, "etl-1", "etl"))
    etl_1 = made[0]
    # (Idle for a minute before the autoscaler would drain it: here the operator does.)
    config = scaling_config(made, min_clusters=0, idle_time="60s")
    with InProcessGateway(loop_thread, config) as gateway:
        options: dict[str, Any] = {"isolation_level": IsolationLevel.READ_COMMITTED, "request_timeout": 60}
        with connect(gateway.url, user="tx", **options) as conn:
            cursor = conn.cursor()
            cursor.execute("SELECT count(*) FROM tpch.tiny.nation")  # (etl-1 starts for it, from zero)
            assert cursor.fetchall() == [[25]]
            with urllib.request.urlopen(f"{etl_1.url}/_sim/transactions", timeout=5) as answer:
                assert len(json.loads(answer.read())) == 1  # open, at the cluster
            # (READY from its first passing check, recorded so at the autoscaler's next look: stopped before
            # that look, it would go from STARTING to DRAINING, which the moves checked below rule out.)
            wait_for(
                "etl-1 recorded READY", lambda: any(m.after == "READY" for m in audited_moves(gateway, "etl-1")), 10
            )
            assert gateway.call("POST", "/gateway/backend/etl-1/stop")[0] == 200
            assert backend_list(gateway)["etl-1"] == "DRAINING"
            time.sleep(4)  # (a drained cluster stops 2 s after its drain began, at a look every 0.5 s)
            assert backend_list(gateway)["etl-1"] == "DRAINING" and etl_1.answers() and not etl_1.stopped_with()
            # The transaction goes on where it began, DRAINING or not.
            cursor.execute("SELECT 2 AS n, count(*) FROM tpch.tiny.region")
            assert cursor.fetchall() == [[2, 5]]
            committing_ms = time.time() * 1000
            conn.commit()
        wait_for("etl-1 stopped", lambda: backend_list(gateway)["etl-1"] == "STOPPED" and not etl_1.answers(), 15)
        moves = moves_until_stopped(gateway, "etl-1")
    # Every move of etl-1, as the audit trail has them (a sampled `backend list` can miss a short READY).
    assert [(move.before, move.after) for move in moves] == A_LIFE_FROM_ZERO, moves
    assert moves[2].why == "stopped by anonymous", moves
    # Its stop began only after the client sent its COMMIT (the audit's clock is this machine's).
    assert moves[3].at >= committing_ms, (moves, committing_ms)
    assert etl_1.start_count() == 1
    stopped_idle(etl_1)
