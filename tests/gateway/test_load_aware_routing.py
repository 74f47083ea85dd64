"""The routers send new queries away from a backend that is busy (its queue, as the monitor reads it)
or slow (its answer times, as the score weighs them).

These tests run alone (``ALONE_MODULES`` in conftest.py at the root): the monitor's figures come on
its timer and the score weighs answer times, so beside other tests on two cores what they read is
the machine's load as much as the backends', and the shares they check would be the machine's."""

from __future__ import annotations

import threading

from tests.conftest import connect
from tests.gateway.conftest import store_plays_no_part
from tests.gateway.test_health import FAST, _route, _states
from tests.trinosim.helpers import run_ignoring_cancel, wait_until


@store_plays_no_part
def test_a_saturated_backend_gets_no_new_queries(make_sim, make_gateway):
    busy = make_sim(name="busy", max_running=1)
    idle = make_sim(name="idle")
    for router in ("score", "least-queued"):
        config = {
            "health": {**FAST, "monitor": "JMX"},
            "routing": {"router": router},
            "backends": [{"name": "busy", "proxy_to": busy.url}, {"name": "idle", "proxy_to": idle.url}],
        }
        blockers = []
        for _ in range(3):
            cursor = connect(busy.url, session_properties={"sim_run_time": "60s"}).cursor()
            thread = threading.Thread(target=run_ignoring_cancel, args=(cursor,))
            thread.start()
            blockers.append((cursor, thread))
        try:
            wait_until(lambda: len([q for q in busy.queries() if q["state"] == "QUEUED"]) == 2, what="queued")
            with make_gateway(config) as gateway:
                wait_until(lambda: _states(gateway)["busy"]["queuedQueries"] == 2, timeout=10, what="stats")
                assert _route(gateway, 8) == {"idle": 8}, router
        finally:
            for cursor, thread in blockers:
                cursor.cancel()
                thread.join(20)


@store_plays_no_part
def test_injected_latency_lowers_a_backends_share(make_sim, make_gateway):
    slow = make_sim(name="slow")
    quick = make_sim(name="quick")
    config = {
        "health": FAST,
        "backends": [{"name": "slow", "proxy_to": slow.url}, {"name": "quick", "proxy_to": quick.url}],
    }
    with make_gateway(config) as gateway:
        before = _route(gateway, 20)
        slow.set_faults(latency_ms=400)
        after = _route(gateway, 20)
    assert before["slow"] >= 4, before  # both share the load while equally fast
    assert after["slow"] <= 3 and after["slow"] < before["slow"], (before, after)
