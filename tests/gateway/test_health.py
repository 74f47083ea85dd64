"""Health monitoring, passive signals, the score and every router, against real trinosim clusters.

Each backend's health is this worker's own (kept in memory; what several workers share through the
store is tests/gateway/test_shared_health.py's): these tests run on the in-memory store alone, but
for the one whose signal comes from the polls of held queries or of queries passed through."""

from __future__ import annotations

from collections import Counter

import pytest
import requests

from tests.conftest import run_query
from tests.gateway.conftest import one_store_per_query_path, store_plays_no_part
from tests.trinosim.helpers import wait_until
from trinosim import TrinoSimProcess
from trinosim.gateway_process import GatewayProcess

FAST = {"interval": 0.5, "timeout": 1.0, "failure_threshold": 2, "success_threshold": 2}


def _states(gateway) -> dict[str, dict]:
    return {b["name"]: b for b in gateway.call("GET", "/gateway/health")[1]}


def _last_backend(gateway) -> str:
    return gateway.queries(limit=1)["queries"][0]["backend"]


def _route(gateway, count: int, **options) -> Counter:
    backends = Counter()
    for _ in range(count):
        run_query(gateway.url, "SELECT 1", **options)
        backends[_last_backend(gateway)] += 1
    return backends


@store_plays_no_part
def test_killed_paused_and_restarted_backends(sim_factory, store_url):
    b1 = sim_factory(name="b1")
    b2 = sim_factory(name="b2")
    config = {"health": FAST, "backends": [{"name": "b1", "proxy_to": b1.url}, {"name": "b2", "proxy_to": b2.url}]}
    with GatewayProcess(store=store_url, config=config) as gateway:
        assert {n: s["state"] for n, s in _states(gateway).items()} == {"b1": "HEALTHY", "b2": "HEALTHY"}
        port = b1.port
        b1.kill()
        # interval x failure_threshold + one timeout, plus slack for a loaded machine
        wait_until(
            lambda: _states(gateway)["b1"]["state"] == "UNHEALTHY",
            timeout=0.5 * 2 + 1.0 + 5,
            what="the killed backend to be UNHEALTHY",
        )
        assert "connection refused" in _states(gateway)["b1"]["lastError"]
        assert _route(gateway, 6) == {"b2": 6}

        revived = TrinoSimProcess(name="b1", port=port).start()
        try:
            wait_until(
                lambda: _states(gateway)["b1"]["state"] == "HEALTHY",
                timeout=0.5 * 2 + 5,
                what="the restarted backend to be HEALTHY",
            )
            # Its score recovers with each good check (a slow first answer after its start weighs on the
            # latency average): it takes queries again within a few checks.
            wait_until(lambda: "b1" in _route(gateway, 4), timeout=15, what="the restarted backend to take queries")

            revived.pause()
            try:
                wait_until(
                    lambda: _states(gateway)["b1"]["state"] == "UNHEALTHY",
                    timeout=0.5 * 2 + 2 * 1.0 + 5,
                    what="the paused backend to be UNHEALTHY",
                )
                assert "no answer within 1s" in _states(gateway)["b1"]["lastError"]
                assert _route(gateway, 4) == {"b2": 4}
            finally:
                revived.resume()
            wait_until(lambda: _states(gateway)["b1"]["state"] == "HEALTHY", timeout=10, what="recovery")
        finally:
            revived.stop()


@store_plays_no_part
def test_one_failed_check_does_not_flip_a_backend(make_sim, make_gateway):
    b1 = make_sim(name="flaky")
    config = {
        "health": {**FAST, "failure_threshold": 3, "monitor": "INFO_API"},
        "backends": [{"name": "flaky", "proxy_to": b1.url}],
    }
    with make_gateway(config) as gateway:
        b1.set_faults(error_rate=1.0, scope="all")
        wait_until(lambda: _states(gateway)["flaky"]["consecutiveFailures"] >= 1, timeout=10, what="a failed check")
        b1.set_faults(error_rate=0.0)
        wait_until(lambda: _states(gateway)["flaky"]["consecutiveFailures"] == 0, timeout=10, what="a good check")
        assert _states(gateway)["flaky"]["state"] == "HEALTHY"


@store_plays_no_part
def test_a_starting_backend_stays_pending_and_gets_no_queries(make_sim, make_gateway):
    booting = make_sim(name="booting", starting="60s")
    ready = make_sim(name="ready")
    config = {
        "health": FAST,
        "backends": [{"name": "booting", "proxy_to": booting.url}, {"name": "ready", "proxy_to": ready.url}],
    }
    with make_gateway(config) as gateway:
        assert _states(gateway)["booting"]["state"] == "PENDING"
        assert _route(gateway, 5) == {"ready": 5}
        assert _states(gateway)["booting"]["state"] == "PENDING"
        booting.set_faults(starting_seconds=0)
        wait_until(lambda: _states(gateway)["booting"]["state"] == "HEALTHY", timeout=10, what="start-up to end")


@store_plays_no_part
def test_5xx_answers_count_against_a_backend_at_once(make_sim, make_gateway):
    broken = make_sim(name="broken")
    fine = make_sim(name="fine")
    # Checks every 60 s: only the passive signal can catch this within the test.
    config = {
        "health": {**FAST, "interval": 60},
        "routing": {"router": "round-robin"},
        "backends": [{"name": "broken", "proxy_to": broken.url}, {"name": "fine", "proxy_to": fine.url}],
    }
    with make_gateway(config) as gateway:
        broken.set_faults(error_rate=1.0, error_status=503)
        for _ in range(6):
            # The Python client retries a 503 POST; the retry is routed again.
            assert run_query(gateway.url, "SELECT 1", max_attempts=5) == [[1]]
        state = _states(gateway)["broken"]
        assert state["state"] == "UNHEALTHY" and "HTTP 503" in state["lastError"]
        assert _route(gateway, 4) == {"fine": 4}


@one_store_per_query_path
def test_hanging_queries_take_a_backend_out_even_while_its_health_checks_pass(make_sim, make_gateway):
    import requests

    hung = make_sim(name="hung")
    fine = make_sim(name="fine")
    # INFO_API checks keep passing (every 0.5 s) while every poll of a query on 'hung' times out.
    # success_threshold 100: once out, 'hung' stays out for the rest of the test.
    config = {
        "health": {**FAST, "monitor": "INFO_API", "success_threshold": 100},
        "proxy": {"read_timeout": 1.5},
        "routing": {"router": "round-robin"},
        "backends": [{"name": "hung", "proxy_to": hung.url}, {"name": "fine", "proxy_to": fine.url}],
    }
    with make_gateway(config) as gateway:
        hung.set_faults(hang_polls=True)
        outcomes = Counter()
        for _ in range(8):
            page = requests.post(
                f"{gateway.url}/v1/statement", data=b"SELECT 1", headers={"X-Trino-User": "u"}, timeout=30
            ).json()
            while "nextUri" in page:
                page = requests.get(page["nextUri"], timeout=30).json()
            outcomes[_last_backend(gateway), page["stats"]["state"]] += 1
        state = _states(gateway)["hung"]
        assert state["state"] == "UNHEALTHY" and "timed out" in state["lastError"]
        # failure_threshold failed requests, then no more queries for 'hung'.
        assert len(hung.queries()) == 2
        # The two it took had returned no row: they moved to 'fine' (failover), where all finished.
        assert outcomes == Counter({("fine", "FINISHED"): 8})


def test_request_failures_survive_passing_checks_until_a_request_is_answered():
    from gateway.backends.health.state import BackendHealth, Health

    health = BackendHealth("b", failure_threshold=2, success_threshold=2)
    health.succeeded(None)
    health.request_failed("timed out")
    health.succeeded(None)  # a passing check between the two failed requests
    assert health.state == Health.HEALTHY
    health.request_failed("timed out")
    assert health.state == Health.UNHEALTHY
    health.succeeded(None)
    health.succeeded(None)
    assert health.state == Health.HEALTHY
    health.request_failed("timed out")  # still no request answered since: out again at once
    assert health.state == Health.UNHEALTHY
    health.succeeded(None)
    health.succeeded(None)
    health.request_answered()
    health.request_failed("timed out")  # one failure after an answered request: stays in
    assert health.state == Health.HEALTHY


@store_plays_no_part
@pytest.mark.parametrize("monitor", ["INFO_API", "UI_API", "JMX", "METRICS", "QUERY", "NOOP"])
def test_every_monitor_checks_a_real_cluster(make_sim, make_gateway, monitor):
    cluster = make_sim(name=f"m-{monitor.lower()}", workers=2)
    config = {
        "health": {**FAST, "ui_user": "monitor"},
        "backends": [{"name": "c", "proxy_to": cluster.url, "monitor": monitor}],
    }
    with make_gateway(config) as gateway:
        state = _states(gateway)["c"]
        assert state["state"] == "HEALTHY", state
        if monitor in ("UI_API", "JMX", "METRICS"):
            assert state["runningQueries"] == 0 and state["queuedQueries"] == 0 and state["workers"] >= 2
        assert run_query(gateway.url, "SELECT 2") == [[2]]
        if monitor in ("UI_API", "QUERY"):
            # No workers: the stats say so (UI_API), and a probe statement fails (QUERY).
            cluster.set_faults(workers=0)
            wait_until(lambda: _states(gateway)["c"]["state"] == "UNHEALTHY", timeout=10, what="no workers noticed")


@store_plays_no_part
def test_metric_thresholds_mark_a_cluster_unhealthy(make_sim, make_gateway):
    cluster = make_sim(name="small", workers=1)
    config = {
        "health": {
            **FAST,
            "monitor": "METRICS",
            "metric_minimums": {"trino_metadata_name_DiscoveryNodeManager_ActiveNodeCount": 3},
        },
        "backends": [{"name": "small", "proxy_to": cluster.url}],
    }
    with make_gateway(config) as gateway:
        wait_until(lambda: _states(gateway)["small"]["state"] == "UNHEALTHY", timeout=10, what="the threshold")
        assert "ActiveNodeCount is 2, below 3" in _states(gateway)["small"]["lastError"]
        cluster.set_faults(workers=2)
        wait_until(lambda: _states(gateway)["small"]["state"] == "HEALTHY", timeout=10, what="enough nodes")


@store_plays_no_part
def test_routers_round_robin_random_weighted_and_user_hash(sims, make_gateway):
    a, b = sims[0].url, sims[1].url
    backends = []
    for group in ("rr", "rnd", "w", "uh"):
        backends += [
            {"name": f"{group}-a", "proxy_to": a, "routing_group": group, "weight": 3 if group == "w" else 1},
            {"name": f"{group}-b", "proxy_to": b, "routing_group": group, "weight": 1},
        ]
    config = {
        "backends": backends,
        "routing": {
            "groups": {
                "rr": {"router": "round-robin"},
                "rnd": {"router": "random"},
                "w": {"router": "weighted"},
                "uh": {"router": "user-hash"},
            }
        },
    }
    with make_gateway(config) as gateway:

        def in_group(group: str, count: int, user: str = "test") -> list[str]:
            chosen = []
            for _ in range(count):
                run_query(gateway.url, "SELECT 1", user=user, http_headers={"X-Trino-Routing-Group": group})
                chosen.append(_last_backend(gateway))
            return chosen

        rr = in_group("rr", 6)
        assert rr[0] != rr[1] and rr[::2] == [rr[0]] * 3 and rr[1::2] == [rr[1]] * 3
        assert set(in_group("rnd", 30)) == {"rnd-a", "rnd-b"}
        weighted = Counter(in_group("w", 60))
        assert weighted["w-a"] > weighted["w-b"] > 0, weighted
        for user in ("ann", "bob", "cid"):
            assert len(set(in_group("uh", 4, user=user))) == 1, user
        owners = {in_group("uh", 1, user=f"user-{i}")[0] for i in range(12)}
        assert owners == {"uh-a", "uh-b"}


@store_plays_no_part
def test_health_api_shows_state_checks_errors_and_score(gateway):
    states = _states(gateway)
    assert set(states) == {"trino-1", "trino-2", "trino-3"}
    for state in states.values():
        assert state["state"] == "HEALTHY" and state["lastCheck"] > 0 and state["lastError"] is None
        assert 0 < state["score"] <= 1 and state["active"] is True
    gateway.deactivate("trino-3")
    assert _states(gateway)["trino-3"]["active"] is False
    assert _states(gateway)["trino-3"]["state"] == "HEALTHY"  # admin intent and health stay apart


@store_plays_no_part
def test_score_and_cost_say_the_same_everywhere(gateway):
    """Higher is better for the score, lower for the cost, in /gateway/health, /metrics and the JMX view alike."""
    run_query(gateway.url, "SELECT 1")
    health = _states(gateway)
    exposition = requests.get(f"{gateway.url}/metrics", timeout=10).text
    for name, state in health.items():
        assert state["score"] == pytest.approx(1 / (1 + state["cost"]), abs=1e-3)
        score = _sample(exposition, "trino_gateway_backend_score", name)
        cost = _sample(exposition, "trino_gateway_backend_cost", name)
        assert score == pytest.approx(1 / (1 + cost))
        # Health is read a moment earlier than the gauges: latency averages may have moved a little.
        assert score == pytest.approx(state["score"], abs=0.05) and cost == pytest.approx(state["cost"], abs=0.05)
        bean = gateway.call("GET", f"/v1/jmx/mbean/trino.gateway:name=Backend,backend={name}")[1]
        attributes = {a["name"]: a["value"] for a in bean["attributes"]}
        assert attributes["Score"] == pytest.approx(1 / (1 + attributes["Cost"]))


def _sample(exposition: str, metric: str, backend: str) -> float:
    prefix = f'{metric}{{backend="{backend}"}} '
    return float(next(line for line in exposition.splitlines() if line.startswith(prefix))[len(prefix) :])
