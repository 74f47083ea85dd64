"""Routing groups: the header, the default group, and the fallback of an empty group."""

from __future__ import annotations

import pytest
from trino.exceptions import TrinoQueryError

from tests.conftest import connect, run_query
from tests.gateway.conftest import one_store_per_query_path

# Routing decides each query's backend on the query path: once where the queue is the worker's (memory),
# once where it is the store's (PostgreSQL; SQLite takes the same SQL path).
pytestmark = one_store_per_query_path


def _backend_of_last(gateway) -> tuple[str, str]:
    last = gateway.queries(limit=1)["queries"][0]
    return last["backend"], last["routingGroup"]


def test_routing_group_header_selects_the_group(gateway):
    for _ in range(3):
        run_query(gateway.url, "SELECT 1", http_headers={"X-Trino-Routing-Group": "etl"})
        assert _backend_of_last(gateway) == ("trino-3", "etl")


def test_queries_without_the_header_go_to_the_default_group(gateway):
    seen = set()
    for _ in range(6):
        run_query(gateway.url, "SELECT 1")
        backend, group = _backend_of_last(gateway)
        assert group == "adhoc"
        seen.add(backend)
    assert seen <= {"trino-1", "trino-2"}


def test_a_group_without_active_backends_falls_back_to_the_default_group(gateway):
    gateway.deactivate("trino-3")
    run_query(gateway.url, "SELECT 1", http_headers={"X-Trino-Routing-Group": "etl"})
    backend, group = _backend_of_last(gateway)
    assert backend in {"trino-1", "trino-2"} and group == "adhoc"
    run_query(gateway.url, "SELECT 1", http_headers={"X-Trino-Routing-Group": "no-such-group"})
    assert _backend_of_last(gateway)[1] == "adhoc"


def test_configured_default_group_is_used(sims, make_gateway):
    config = {
        "routing": {"default_group": "etl"},
        "backends": [
            {"name": "a", "proxy_to": sims[0].url, "routing_group": "adhoc"},
            {"name": "e", "proxy_to": sims[2].url, "routing_group": "etl"},
        ],
    }
    with make_gateway(config) as gateway:
        run_query(gateway.url, "SELECT 1")
        assert _backend_of_last(gateway) == ("e", "etl")


def test_no_active_backend_anywhere_fails_at_once_with_a_clear_error(gateway):
    for name in ("trino-1", "trino-2", "trino-3"):
        gateway.deactivate(name)
    with pytest.raises(TrinoQueryError) as error, connect(gateway.url, max_attempts=1) as conn:
        conn.cursor().execute("SELECT 1")
    assert error.value.error_name == "NO_NODES_AVAILABLE"
    assert "no active and healthy backend in routing group 'adhoc'" in error.value.message
    with (
        pytest.raises(TrinoQueryError) as error,
        connect(gateway.url, http_headers={"X-Trino-Routing-Group": "etl"}) as conn,
    ):
        conn.cursor().execute("SELECT 1")
    assert "routing group 'etl' nor in the default group 'adhoc'" in error.value.message


def test_a_refused_connection_moves_a_new_query_to_the_next_backend(sims, make_gateway, refused_port):

    dead = f"http://127.0.0.1:{refused_port}"
    # NOOP: the dead backend looks healthy, so only the refused connection can steer queries away.
    config = {
        "health": {"monitor": "NOOP"},
        "backends": [{"name": "dead", "proxy_to": dead}, {"name": "alive", "proxy_to": sims[0].url}],
    }
    with make_gateway(config) as gateway:
        for _ in range(6):
            assert run_query(gateway.url, "SELECT 42") == [[42]]
        assert {q["backend"] for q in gateway.queries()["queries"]} == {"alive"}


def test_every_backend_refusing_gives_a_clear_error(make_gateway, refused_port):

    gone = f"http://127.0.0.1:{refused_port}"
    # With health checks, a dead backend is never tried: the error says what state it is in.
    with make_gateway({"backends": [{"name": "gone", "proxy_to": gone}]}) as gateway:
        with pytest.raises(TrinoQueryError) as error, connect(gateway.url) as conn:
            conn.cursor().execute("SELECT 1")
        assert "no active and healthy backend in routing group 'adhoc' (gone " in error.value.message
    # Without them (NOOP), the refused connection itself is reported.
    config = {"health": {"monitor": "NOOP"}, "backends": [{"name": "gone", "proxy_to": gone}]}
    with make_gateway(config) as gateway:
        with pytest.raises(TrinoQueryError) as error, connect(gateway.url) as conn:
            conn.cursor().execute("SELECT 1")
        assert "no backend of routing group 'adhoc' could be reached: gone (connection refused)" in error.value.message
