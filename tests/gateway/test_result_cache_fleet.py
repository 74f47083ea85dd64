"""The result cache on a fleet: two gateway nodes on one PostgreSQL store (and two workers of a
node on one SQLite file) share entries through the store, and a purge through one reaches the other."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
import trino

from tests.gateway.test_result_cache import at_clusters, cache_config, dashboard_sql, run
from tests.inprocess import InProcessGateway
from tests.trinosim.helpers import wait_until
from trinosim.inprocess import InProcessSim

# The store is what these prove: its tier is the one the nodes share (no disk tier, so that a hit on
# the second node can come from nowhere else).
pytestmark = pytest.mark.parametrize("store_kind", ["sqlite", "postgres"], indirect=True, scope="session")


def fleet_config(sims: list[InProcessSim]) -> dict[str, Any]:
    return {**cache_config(sims), "cache": {"disk_bytes": 0}}


def test_a_result_cached_through_one_node_is_a_hit_through_the_other(
    make_gateway: Callable[..., InProcessGateway], sims: list[InProcessSim]
):
    first, second = make_gateway(fleet_config(sims)), make_gateway(fleet_config(sims))
    sql = dashboard_sql()
    columns, rows, _ = run(first, sql)
    # The entry reaches the store in the background, after the client had its last page.
    wait_until(lambda: _store_entries(first) >= 1, what="the entry")
    again = run(second, sql)
    assert again[2]["resultCache"] == "HIT" and again[0] == columns and again[1] == rows
    assert at_clusters(sims, sql) == 1


def test_a_purge_through_one_node_reaches_the_entries_the_other_holds(
    make_gateway: Callable[..., InProcessGateway], sims: list[InProcessSim]
):
    first, second = make_gateway(fleet_config(sims)), make_gateway(fleet_config(sims))
    sql = dashboard_sql()
    run(first, sql)
    wait_until(lambda: _store_entries(first) >= 1, what="the entry")
    assert run(first, sql)[2]["resultCache"] == "HIT"  # from the first node's memory
    purged = requests.delete(f"{second.url}/gateway/cache", timeout=10).json()
    assert purged["purged"] >= 1
    # Within a second the first node has read the purge mark: what it holds from before is gone.
    wait_until(lambda: ran_on_a_cluster(first, sql), timeout=10, what="the purge to reach the first node")
    assert at_clusters(sims, sql) >= 2


def ran_on_a_cluster(gateway: InProcessGateway, sql: str) -> bool:
    """Whether ``sql`` ran on a cluster now: False for a cached answer, and for one the purge mark
    reached between its QUEUED page and its rows (the client is told to run it again: docs/cache.md)."""
    try:
        return "resultCache" not in run(gateway, sql)[2]
    except trino.exceptions.TrinoQueryError as error:
        assert "was purged while it was read" in error.message, error
        return False


def _store_entries(gateway: InProcessGateway) -> int:
    return requests.get(f"{gateway.url}/gateway/cache", timeout=10).json()["tiers"]["store"]["entries"]
