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
