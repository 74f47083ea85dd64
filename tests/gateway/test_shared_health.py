"""One health check per backend per interval for every worker and node on one store
(``gateway/backends/health/shared.py``): a lease names the worker that checks, the others apply its results."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from gateway.backends.health import HealthChecker
from gateway.backends.health.shared import SharedChecks
from gateway.backends.health.state import Health
from gateway.backends.registry import BackendRegistry
from gateway.config import HealthConfig
from gateway.store import MemoryStore
from gateway.store.records import SharedCheck
from gateway.upstream import Upstream
from tests.trinosim.helpers import wait_until
from trinosim.gateway_process import GatewayProcess


def info_requests(url: str) -> int:
    """How often the cluster was asked GET /v1/info (trinosim counts it)."""
    bean = requests.get(f"{url}/v1/jmx/mbean/trinosim:name=Requests", timeout=10).json()
    return next(a["value"] for a in bean["attributes"] if a["name"] == "InfoRequests")


def test_one_worker_holds_a_backend_s_lease_until_it_runs_out():
    async def scenario() -> None:
        store = MemoryStore()
        a = SharedChecks(store, interval=0.05, timeout=0.05, holder="a")
        b = SharedChecks(store, interval=0.05, timeout=0.05, holder="b")
        assert await a.claim("trino-1") is True
        assert await b.claim("trino-1") is False
        assert await a.claim("trino-1") is True  # renewed
        assert await b.claim("trino-2") is True  # leases are per backend
        # a stops renewing (its worker died): after the lease, b takes trino-1 over.
        await asyncio.sleep(a.lease + 0.05)
        assert await b.claim("trino-1") is True
        assert await a.claim("trino-1") is False
        # Only the holder's results are published, and each is applied once by the others.
        await a.publish(SharedCheck("trino-1", 1, "failed", "from a"))
        await b.publish(SharedCheck("trino-1", 2, "ok"))
        reader = SharedChecks(store, interval=0.05, timeout=0.05, holder="c")
        latest = await reader.latest("trino-1")
        assert latest is not None and latest.checked_at == 2
        assert await reader.latest("trino-1") is None
        # A worker that stops hands its leases back: the next claimer need not wait for them to run out.
        await b.release()
        assert await reader.claim("trino-1") is True and await reader.claim("trino-2") is True

    asyncio.run(scenario())


def test_a_worker_that_does_not_hold_the_lease_follows_the_holder_s_checks(sims):
    async def scenario() -> None:
        store = MemoryStore()
        from gateway.store.backend import Backend

        await store.add_backend(Backend(name="trino-1", proxy_to=sims[0].url))
        settings = HealthConfig(interval=0.1, timeout=2.0)
        upstream = Upstream(1.0, 5.0, 10, 10)
        checkers = []
        for holder in ("first", "second"):
            shared = SharedChecks(store, settings.interval, settings.timeout, holder=holder)
            checkers.append(HealthChecker(BackendRegistry(store, 0.05), upstream, settings, shared))
        checked: dict[str, int] = {"first": 0, "second": 0}
        for checker in checkers:
            probe = checker._probe

            async def counted(backend, probe=probe, who=checker.shared.holder):
                checked[who] += 1
                return await probe(backend)

            checker._probe = counted  # type: ignore[method-assign]
        tasks = [asyncio.create_task(c.run_forever()) for c in checkers]
        try:
            deadline = time.monotonic() + 15
            while not all(c.of("trino-1").state == Health.HEALTHY for c in checkers):
                assert time.monotonic() < deadline, "both workers should see trino-1 HEALTHY"
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await upstream.close()
        # One worker made every check; the other learnt trino-1's health from its results.
        assert sorted(checked.values())[0] == 0 and sorted(checked.values())[1] >= 2, checked

    asyncio.run(scenario())


def test_with_the_store_down_every_worker_checks_for_itself():
    async def scenario() -> None:
        store = MemoryStore()
        store.failing = "the store is down"
        shared = SharedChecks(store, interval=0.05, timeout=0.05, holder="a")
        assert await shared.claim("trino-1") is True
        assert await shared.latest("trino-1") is None
        store.failing = None
        other = SharedChecks(store, interval=0.05, timeout=0.05, holder="b")
        assert await other.claim("trino-1") is True
        assert await shared.claim("trino-1") is False

    asyncio.run(scenario())


@pytest.mark.slow
def test_three_nodes_of_two_workers_check_each_backend_once_per_interval(make_sim):
    """The figure of issue 16: checks per backend per interval, 3 nodes x 2 workers on one
    PostgreSQL, with the checks shared and, as before this change, each worker on its own."""
    from tests.postgres import PostgresServer

    interval, window = 0.5, 5.0
    rates: dict[bool, float] = {}
    with PostgresServer() as postgres:
        for shared in (True, False):
            postgres.reset()
            cluster = make_sim(name=f"counted-{shared}")
            config = {
                "backends": [{"name": "counted", "proxy_to": cluster.url}],
                "health": {"interval": interval, "shared": shared},
            }
            nodes = [GatewayProcess(store=postgres.url(), config=config, workers=2) for _ in range(3)]
            try:
                with ThreadPoolExecutor(len(nodes)) as pool:
                    list(pool.map(lambda node: node.start(), nodes))
                before = info_requests(cluster.url)
                time.sleep(window)
                rates[shared] = (info_requests(cluster.url) - before) / (window / interval)
            finally:
                for node in nodes:
                    node.stop()
    print(
        f"\nchecks of one backend per interval, 3 nodes x 2 workers: shared {rates[True]:.2f}, "
        f"each worker on its own {rates[False]:.2f}"
    )
    assert rates[False] >= 4  # six workers, each on its own schedule
    assert rates[True] <= 1.5  # one for the fleet (a takeover or a late renewal may add one)


@pytest.mark.slow
def test_when_the_node_holding_the_lease_dies_another_takes_the_checks_over(make_sim):
    from tests.postgres import PostgresServer

    cluster = make_sim(name="taken-over")
    config = {"backends": [{"name": "taken-over", "proxy_to": cluster.url}], "health": {"interval": 0.5}}
    with PostgresServer() as postgres:
        first = GatewayProcess(store=postgres.url(), config=config).start()
        holder = wait_until(
            lambda: postgres.sql("SELECT holder FROM gateway_health_check WHERE backend_name = 'taken-over'"),
            what="the first node to take the lease",
        )
        second = GatewayProcess(store=postgres.url(), config=config).start()
        try:
            first.kill()
            taken = wait_until(
                lambda: (
                    postgres.sql("SELECT holder FROM gateway_health_check WHERE backend_name = 'taken-over'") != holder
                ),
                timeout=30,
                what="the second node to take the lease over",
            )
            assert taken
            # And it checks: the cluster keeps being asked.
            before = info_requests(cluster.url)
            wait_until(lambda: info_requests(cluster.url) > before + 2, what="checks by the second node")
            status, health = second.call("GET", "/gateway/health")
            assert status == 200 and health[0]["state"] == "HEALTHY"
        finally:
            second.stop()
            first.stop()
