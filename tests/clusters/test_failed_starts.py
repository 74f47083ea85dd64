"""Clusters that do not start, through a running gateway with trinosim clusters behind the command
scaler (a burst from zero whose first cluster fails to start: chaos/test_scale_from_zero.py): when
none starts, or the only one is deactivated, the queries fail once the start timeout is over, with an
error that names the group and its clusters; a start command that hangs is cut at its timeout,
counted, and holds up no other group's queries."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import trino

from tests.clusters.helpers import CommandCluster, backend_list, scaling_config
from tests.conftest import connect
from tests.inprocess import InProcessGateway
from trinosim.inprocess import InProcessSim, LoopThread

pytestmark = pytest.mark.slow  # trinosim processes, started by the scaler


def count_nation(url: str, number: int, **options: Any) -> list[Any]:
    with connect(url, user=f"user-{number % 5}", request_timeout=120, **options) as conn:
        cursor = conn.cursor()
        cursor.execute(f"SELECT {number} AS n, count(*) FROM tpch.tiny.nation")
        return cursor.fetchall()


def waits_then_fails(url: str, **options: Any) -> tuple[trino.exceptions.TrinoQueryError, float]:
    """The error of a query that waited for a cluster that never came, and how long it waited."""
    began = time.monotonic()
    with pytest.raises(trino.exceptions.TrinoQueryError) as raised:
        count_nation(url, 0, **options)
    return raised.value, time.monotonic() - began


def test_when_no_cluster_starts_the_queries_fail_after_the_start_timeout_naming_the_group_and_its_clusters(
    loop_thread: LoopThread, tmp_path: Path, made: list[CommandCluster]
):
    made += [CommandCluster(tmp_path, f"etl-{n}", "etl", fail_start=True) for n in (1, 2)]
    with InProcessGateway(loop_thread, scaling_config(made, start_timeout="3s")) as gateway:
        with ThreadPoolExecutor(5) as pool:
            failures = list(pool.map(lambda _: waits_then_fails(gateway.url), range(5)))
        for error, waited in failures:
            assert error.error_name == "EXCEEDED_TIME_LIMIT"
            message = error.message
            assert "routing group 'etl' has no READY cluster" in message
            for name in ("etl-1", "etl-2"):
                assert f"{name} STOPPED (start failed: start of {name} failed: exit code 3" in message, message
            assert waited < 3 * 2 + 3, waited  # (3 s for each cluster, and a margin)
        waits = [waited for _, waited in failures]
        print(f"\nno cluster started: failed after {min(waits):.1f} to {max(waits):.1f} s")
        assert all(cluster.start_count() >= 1 for cluster in made)


def test_a_deactivated_cluster_is_never_started(loop_thread: LoopThread, tmp_path: Path, made: list[CommandCluster]):
    made.append(CommandCluster(tmp_path, "etl-1", "etl", active=False))
    with InProcessGateway(loop_thread, scaling_config(made, start_timeout="3s")) as gateway:
        assert backend_list(gateway) == {"etl-1": "DEACTIVATED"}
        error, waited = waits_then_fails(gateway.url)
        assert error.error_name == "EXCEEDED_TIME_LIMIT"
        assert "routing group 'etl' has no READY cluster" in error.message and "etl-1 DEACTIVATED" in error.message
        assert 2.5 < waited < 6, waited
        assert backend_list(gateway) == {"etl-1": "DEACTIVATED"}
    assert made[0].start_count() == 0


def test_a_start_command_that_hangs_is_cut_at_its_timeout_counted_and_holds_no_other_group_up(
    loop_thread: LoopThread, make_sim: Callable[..., InProcessSim], refused_port: int
):
    adhoc = make_sim(name="adhoc-1")
    hanging = {
        "name": "hang-1",
        "proxy_to": f"http://127.0.0.1:{refused_port}",
        "routing_group": "etl",
        "scaler": {"kind": "command", "start": "sleep 60", "stop": "true", "timeout": 1},
    }
    config = {
        "backends": [hanging, {"name": "adhoc-1", "proxy_to": adhoc.url, "routing_group": "adhoc"}],
        "routing": {"default_group": "adhoc", "groups": {"etl": {"scaling": {"start_timeout": "5s"}}}},
        "scaling": {"interval": "0.5s"},
        "health": {"interval": 0.5, "timeout": 2, "success_threshold": 1, "failure_threshold": 1},
    }
    with InProcessGateway(loop_thread, config) as gateway:
        failed: list[tuple[trino.exceptions.TrinoQueryError, float]] = []
        etl = threading.Thread(
            target=lambda: failed.append(waits_then_fails(gateway.url, http_headers={"X-Trino-Routing-Group": "etl"}))
        )
        etl.start()
        # While hang-1's start hangs, adhoc's queries go on as ever.
        slowest = 0.0
        while etl.is_alive():
            began = time.monotonic()
            assert count_nation(gateway.url, 1) == [[1, 25]]
            slowest = max(slowest, time.monotonic() - began)
        etl.join()
        print(f"\nadhoc's slowest query while etl's start hung: {slowest:.2f} s")
        assert slowest < 1.0
        error, _ = failed[0]
        assert error.error_name == "EXCEEDED_TIME_LIMIT"
        assert "hang-1 STOPPED (start failed: start of hang-1 timed out after 1 s" in error.message, error.message
        with urllib.request.urlopen(f"{gateway.url}/metrics", timeout=5) as answer:
            metrics = answer.read().decode()
        lines = [
            line
            for line in metrics.splitlines()
            if line.startswith("trino_gateway_cluster_actions_total{")
            and 'backend="hang-1"' in line
            and 'action="start"' in line
            and 'outcome="failed"' in line
        ]
        assert len(lines) == 1 and float(lines[0].split()[-1]) >= 1, lines
