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
    """The first start of a fleet: every node migrates the schema and seeds the configured backends
    at once; one migrates, the others wait on its lock and find it done, and a backend another node
    added a moment before is no error (before, one of three failed on a duplicate key)."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.postgres import PostgresServer
    from trinosim.gateway_process import GatewayProcess

    config = {"backends": [{"name": f"trino-{i}", "proxy_to": sim.url} for i, sim in enumerate(sims, 1)]}
    with PostgresServer() as postgres:
        nodes = [GatewayProcess(store=postgres.url(), config=config) for _ in range(3)]
        try:
            with ThreadPoolExecutor(3) as pool:
                list(pool.map(lambda node: node.start(), nodes))
            assert all(node.call("GET", "/gateway/readyz")[0] == 200 for node in nodes)
        finally:
            for node in nodes:
                node.stop()


RULES = """---
name: airflow
condition: 'request.getHeader("X-Trino-Source") == "airflow"'
actions:
  - 'result.put("routingGroup", "etl")'
"""


def rules_in_use(gateway: InProcessGateway) -> str:
    status, body = gateway.call("GET", "/gateway/routing-rules")
    assert status == 200, body
    return body["text"]


def test_a_rules_change_on_one_node_reaches_every_node(loop_thread, sims, tmp_path):
    """Each node has its own copy of the rules file: a change made through node A's API, or by
    editing node B's file, ends in the same rules on both."""
    from tests.postgres import PostgresServer

    files = [tmp_path / "a" / "rules.yaml", tmp_path / "b" / "rules.yaml"]
    configs = []
    for path in files:
        path.parent.mkdir()
        path.write_text(RULES)
        configs.append(
            {
                "backends": [{"name": "trino-1", "proxy_to": sims[0].url}],
                "routing_rules": {"enabled": True, "type": "FILE", "rules_file": str(path), "refresh_seconds": 0.2},
            }
        )
    with (
        PostgresServer() as postgres,
        InProcessGateway(loop_thread, configs[0], postgres.url()) as a,
        InProcessGateway(loop_thread, configs[1], postgres.url()) as b,
    ):
        changed = RULES.replace("airflow", "reports")
        assert a.call("PUT", "/gateway/routing-rules", {"text": changed})[0] == 200
        wait_until(lambda: rules_in_use(b) == changed, timeout=10, what="node B to use node A's new rules")
        # B's own file holds them too (it can be written here), so that a restart of B starts from them.
        wait_until(lambda: files[1].read_text() == changed, what="node B's file to hold the new rules")

        edited = RULES.replace("airflow", "dbt")
        files[1].write_text(edited)
        wait_until(lambda: rules_in_use(a) == edited, timeout=15, what="node A to use node B's edited file")
        assert rules_in_use(b) == edited


def test_a_poll_reaching_a_node_that_did_not_route_the_query_costs_one_store_read_and_no_probe(
    loop_thread, sims, tmp_path
):
    """Behind a load balancer a query's next poll may reach any node: that node reads the query from
    the store once, knows it from then on, and asks no backend about it."""
    import requests

    store = f"sqlite:///{tmp_path / 'fleet.db'}"
    config = {"backends": [{"name": "trino-1", "proxy_to": sims[0].url}, {"name": "trino-2", "proxy_to": sims[1].url}]}
    with InProcessGateway(loop_thread, config, store) as a, InProcessGateway(loop_thread, config, store) as b:
        page = requests.post(
            f"{a.url}/v1/statement",
            data="SELECT 1",
            headers={"X-Trino-User": "u", "X-Trino-Session": "sim_run_time=1s"},
            timeout=10,
        ).json()
        a.loop.run(a.services.history.flush())  # as a node does within 50 ms
        book, reads, probes = b.services.book, [], []
        real_read, real_probe = book.store.get_query, book._ask_backends

        async def read(query_id: str):
            reads.append(query_id)
            return await real_read(query_id)

        async def probe(query_id: str):
            probes.append(query_id)
            return await real_probe(query_id)

        book.store.get_query, book._ask_backends = read, probe
        polls, rows = 0, []
        while "nextUri" in page:
            # Every poll to node B, which never saw the query.
            page = requests.get(page["nextUri"].replace(a.url, b.url), headers={"X-Trino-User": "u"}, timeout=10).json()
            polls += 1
            rows += page.get("data", [])
        assert page["stats"]["state"] == "FINISHED" and rows == [[1]]
        assert polls >= 2 and reads == [page["id"]] and probes == []
