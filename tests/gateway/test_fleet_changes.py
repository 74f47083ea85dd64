"""Admin changes reach every worker and node through the store at once: PostgreSQL's LISTEN/NOTIFY,
with polling (``routing.backend_refresh_seconds``) as the fallback."""

from __future__ import annotations

import time

import pytest

from tests.inprocess import InProcessGateway
from tests.trinosim.helpers import wait_until

pytestmark = pytest.mark.slow


def active_in_registry(gateway: InProcessGateway, name: str) -> bool:
    """What the gateway routes by: its registry's copy of the backend list."""
    backends = gateway.loop.run(gateway.services.registry.all())
    return next(b.active for b in backends if b.name == name)


def test_a_deactivation_on_one_node_is_obeyed_by_another_without_waiting_for_its_poll(loop_thread, sims):
    from tests.postgres import PostgresServer

    config = {
        "backends": [{"name": "trino-1", "proxy_to": sims[0].url}, {"name": "trino-2", "proxy_to": sims[1].url}],
        # Polling alone would take a minute: only the notification can be this quick.
        "routing": {"backend_refresh_seconds": 60},
    }
    with (
        PostgresServer() as postgres,
        InProcessGateway(loop_thread, config, postgres.url()) as a,
        InProcessGateway(loop_thread, config, postgres.url()) as b,
    ):
        assert active_in_registry(b, "trino-1") is True
        started = time.monotonic()
        a.deactivate("trino-1")
        wait_until(lambda: active_in_registry(b, "trino-1") is False, timeout=10, what="node B to see it")
        print(f"\nnode B obeyed node A's deactivation after {time.monotonic() - started:.3f} s")
        a.activate("trino-1")
        wait_until(lambda: active_in_registry(b, "trino-1") is True, timeout=10, what="node B to see it back")


def test_nodes_that_start_together_on_an_empty_database_all_come_up(sims):
    """The first start of a fleet: every node migrates the schema at once; one does, the others wait
    on its lock and find it done (before, one of three failed on a duplicate key)."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.postgres import PostgresServer
    from trinosim.gateway_process import GatewayProcess

    config = {"backends": [{"name": "trino-1", "proxy_to": sims[0].url}]}
    with PostgresServer() as postgres:
        nodes = [GatewayProcess(store=postgres.url(), config=config) for _ in range(3)]
        try:
            with ThreadPoolExecutor(3) as pool:
                list(pool.map(lambda node: node.start(), nodes))
            assert all(node.call("GET", "/gateway/readyz")[0] == 200 for node in nodes)
        finally:
            for node in nodes:
                node.stop()
