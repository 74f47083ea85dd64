"""Query history: every routed query, queryable with filters and pages, kept for the retention."""

from __future__ import annotations

import pytest
from trino.exceptions import TrinoUserError

from tests.conftest import connect, run_query
from tests.gateway.conftest import every_store
from tests.trinosim.helpers import wait_until


def test_routed_queries_are_recorded_with_their_outcome(gateway):
    run_query(gateway.url, "SELECT 'a'", user="alice", source="airflow", client_tags=["nightly", "etl"])
    with pytest.raises(TrinoUserError), connect(gateway.url, user="bob") as conn:
        conn.cursor().execute("SELECT * FROM tpch.tiny.nope")
    run_query(gateway.url, "SELECT 'e'", user="bob", http_headers={"X-Trino-Routing-Group": "etl"})

    alice = wait_until(
        lambda: [q for q in gateway.queries(user="alice")["queries"] if q["state"] != "RUNNING"],
        what="alice's query to finish in history",
    )
    assert alice[0]["source"] == "airflow" and alice[0]["clientTags"] == ["nightly", "etl"]
    assert alice[0]["query"] == "SELECT 'a'" and alice[0]["state"] == "FINISHED"
    assert alice[0]["routingGroup"] == "adhoc" and alice[0]["backend"] in {"trino-1", "trino-2"}
    assert alice[0]["elapsedMs"] >= 0 and alice[0]["finishedAt"] >= alice[0]["submittedAt"]

    failed = wait_until(lambda: gateway.queries(state="FAILED")["queries"], what="the failed query")
    assert failed[0]["user"] == "bob" and failed[0]["errorName"] == "TABLE_NOT_FOUND"
    assert gateway.queries(group="etl")["queries"][0]["backend"] == "trino-3"
    assert gateway.queries(backend="trino-3")["total"] == 1


def test_history_is_paged_and_filtered_by_time(gateway):
    for i in range(7):
        run_query(gateway.url, f"SELECT {i}", user="pager")
    first = gateway.queries(user="pager", limit=3)
    second = gateway.queries(user="pager", limit=3, offset=3)
    third = gateway.queries(user="pager", limit=3, offset=6)
    assert first["total"] == 7
    texts = [q["query"] for page in (first, second, third) for q in page["queries"]]
    assert sorted(texts) == sorted(f"SELECT {i}" for i in range(7))
    newest = first["queries"][0]["submittedAt"]
    assert gateway.queries(user="pager", since=newest + 1)["total"] == 0
    assert gateway.queries(user="pager", until=newest + 1)["total"] == 7
    status, body = gateway.call("GET", "/gateway/queries?limit=abc")
    assert status == 400 and "limit" in body["error"]


def test_long_statements_are_cut_to_the_configured_length(sims, make_gateway):
    config = {"history": {"sql_chars": 20}, "backends": [{"name": "c1", "proxy_to": sims[0].url}]}
    with make_gateway(config) as gateway:
        sql = "SELECT 1 /* " + "x" * 3000 + " */"
        run_query(gateway.url, sql)
        assert gateway.queries()["queries"][0]["query"] == sql[:20]


def test_history_older_than_the_retention_is_removed(sims, make_gateway):
    config = {"history": {"retention_hours": 0.0005}, "backends": [{"name": "c1", "proxy_to": sims[0].url}]}
    with make_gateway(config) as gateway:
        run_query(gateway.url, "SELECT 1")
        assert gateway.queries()["total"] == 1
        wait_until(lambda: gateway.queries()["total"] == 0, timeout=30, what="the old query to be purged")


@every_store
def test_what_no_store_keeps_as_sent_does_not_stop_the_history(gateway):
    """PostgreSQL refuses NUL in text and values longer than their column; before, one such query
    failed its whole batch of history rows and every batch after it, on every retry."""
    long_user, long_source = "u" * 300, "s" * 300
    run_query(gateway.url, "SELECT 'a\x00b'", user=long_user, source=long_source)
    run_query(gateway.url, "SELECT 2", user="after")

    after = wait_until(lambda: gateway.queries(user="after")["queries"], what="the next query in history")
    assert after[0]["query"] == "SELECT 2"
    odd = gateway.queries(user=long_user)["queries"]  # the filter is cut as the value was
    assert len(odd) == 1 and odd[0]["user"].startswith("u" * 256) and odd[0]["source"].startswith("s" * 256)
    assert odd[0]["query"] in {"SELECT 'a\x00b'", "SELECT 'a\ufffdb'"}
    # A filter with a NUL in it is a filter, not a server error.
    status, body = gateway.call("GET", "/gateway/queries?user=a%00b&group=%00")
    assert status == 200 and body["total"] == 0


def test_the_history_says_what_chose_each_querys_routing_group(gateway):
    run_query(gateway.url, "SELECT 'h'", user="by-header", http_headers={"X-Trino-Routing-Group": "etl"})
    run_query(gateway.url, "SELECT 'd'", user="by-default")

    by_header = gateway.queries(user="by-header")["queries"]
    assert [(q["routingSource"], q["routingRule"], q["backend"]) for q in by_header] == [("header", None, "trino-3")]
    by_default = gateway.queries(user="by-default")["queries"]
    assert [(q["routingSource"], q["routingRule"], q["routingGroup"]) for q in by_default] == [
        ("default", None, "adhoc")
    ]


def test_a_query_links_to_its_trace_in_the_tracing_ui(sims, make_gateway):
    # No collector listens there: spans are dropped, queries are not held up. (On a SQL store the three
    # gateways share the history: each query is found by its user.)
    tracing = {"endpoint": "http://127.0.0.1:9", "export_timeout": 0.2}
    backends = [{"name": "c1", "proxy_to": sims[0].url}]
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    client_trace = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    jaeger = "http://jaeger.example:16686/trace/{trace_id}?uiFind={trace_id}"
    linked = make_gateway({"backends": backends, "observability": {"tracing": {**tracing, "ui_url": jaeger}}})
    run_query(linked.url, "SELECT 1", user="linked", http_headers=client_trace)
    [query] = linked.queries(user="linked")["queries"]
    # The gateway continues the client's trace: the query's trace is the client's.
    assert query["traceId"] == trace_id
    assert query["traceUrl"] == f"http://jaeger.example:16686/trace/{trace_id}?uiFind={trace_id}"
    assert linked.call("GET", f"/gateway/queries/{query['queryId']}")[1]["traceUrl"] == query["traceUrl"]
    # Traced, with no tracing UI configured: the id, no link.
    unlinked = make_gateway({"backends": backends, "observability": {"tracing": tracing}})
    run_query(unlinked.url, "SELECT 1", user="unlinked")
    [query] = unlinked.queries(user="unlinked")["queries"]
    assert len(query["traceId"]) == 32 and query["traceUrl"] is None
    # Not traced: neither, whatever the UI.
    untraced = make_gateway({"backends": backends, "observability": {"tracing": {"ui_url": jaeger}}})
    run_query(untraced.url, "SELECT 1", user="untraced")
    [query] = untraced.queries(user="untraced")["queries"]
    assert (query["traceId"], query["traceUrl"]) == (None, None)
