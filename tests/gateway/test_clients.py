"""Unmodified Trino clients through the gateway get exactly what they get directly."""

from __future__ import annotations

import pytest
import requests
from trino.exceptions import TrinoUserError

from tests.conftest import connect, run_query
from tests.gateway.conftest import one_store_per_query_path

# Clients see the query path alone: once where the gateway holds queries, once where it passes them through.
pytestmark = one_store_per_query_path

QUERIES = [
    "SELECT * FROM tpch.tiny.nation ORDER BY nationkey",
    "SELECT count(*), sum(nationkey), max(name) FROM tpch.tiny.nation",
    "SELECT r.name, count(*) FROM tpch.tiny.nation n JOIN tpch.tiny.region r ON n.regionkey = r.regionkey "
    "GROUP BY r.name ORDER BY r.name",
    "SELECT orderkey, linenumber, quantity, shipdate FROM tpch.tiny.lineitem ORDER BY orderkey, linenumber",
    "SELECT CAST(1 AS BIGINT), CAST(2 AS INTEGER), 3.5e0, 'text', true, DATE '2024-01-02', "
    "TIMESTAMP '2024-01-02 03:04:05.123', DECIMAL '12.34', ARRAY[1, 2, 3]",
]


@pytest.mark.parametrize("sql", QUERIES)
def test_python_client_results_match_direct(gateway, sims, sql):
    assert run_query(gateway.url, sql) == run_query(sims[0].url, sql)


def test_every_group_gives_the_same_answers_including_the_rewritten_one(gateway, sims):
    # trino-3 (group etl) ignores X-Forwarded-*: only the gateway's rewriting keeps the client on it.
    sql = QUERIES[3]
    assert run_query(gateway.url, sql, http_headers={"X-Trino-Routing-Group": "etl"}) == run_query(sims[2].url, sql)


def test_next_uri_points_at_the_gateway_for_every_backend(gateway):
    for group in ("adhoc", "etl"):
        first = requests.post(
            f"{gateway.url}/v1/statement",
            data=b"SELECT 1",
            timeout=10,
            headers={"X-Trino-User": "u", "X-Trino-Routing-Group": group},
        ).json()
        assert first["nextUri"].startswith(f"{gateway.url}/v1/statement/queued/"), group
        assert first["infoUri"] == f"{gateway.url}/ui/query.html?{first['id']}"
        page = requests.get(first["nextUri"], timeout=10).json()
        while "nextUri" in page:
            assert page["nextUri"].startswith(gateway.url), group
            page = requests.get(page["nextUri"], timeout=10).json()
        assert page["stats"]["state"] == "FINISHED"


def test_session_statements_work_through_the_gateway(gateway):
    with connect(gateway.url) as conn:
        cursor = conn.cursor()
        cursor.execute("USE tpch.tiny")
        cursor.fetchall()
        cursor.execute("SET SESSION query_max_run_time = '3h'")
        cursor.fetchall()
        assert conn._client_session.properties == {"query_max_run_time": "3h"}
        # USE must have reached the client through the gateway for this unqualified name to resolve.
        cursor.execute("SELECT count(*) FROM nation")
        assert cursor.fetchall() == [[25]]


def test_prepared_statements_work_through_the_gateway(gateway):
    with connect(gateway.url, legacy_prepared_statements=True) as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT name FROM tpch.tiny.region WHERE regionkey = ?", (3,))
        assert cursor.fetchall() == [["EUROPE"]]
    with connect(gateway.url) as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT name FROM tpch.tiny.region WHERE regionkey = ?", (4,))
        assert cursor.fetchall() == [["MIDDLE EAST"]]


def test_errors_reach_the_client_unchanged(gateway, sims):
    for sql, name in (("SELECT * FROM tpch.tiny.nope", "TABLE_NOT_FOUND"), ("SELEC 1", "SYNTAX_ERROR")):
        with pytest.raises(TrinoUserError) as through, connect(gateway.url) as conn:
            conn.cursor().execute(sql)
        with pytest.raises(TrinoUserError) as direct, connect(sims[0].url) as conn:
            conn.cursor().execute(sql)
        assert through.value.error_name == direct.value.error_name == name
        assert through.value.message == direct.value.message


def test_request_without_user_is_refused_as_trino_refuses_it(gateway):
    response = requests.post(f"{gateway.url}/v1/statement", data=b"SELECT 1", timeout=10)
    assert (response.status_code, response.text) == (400, "User must be set")


def test_trino_cli_through_the_gateway_matches_direct(gateway, clusters, trino_cli):
    sql = (
        "USE tpch.tiny; SELECT name, regionkey FROM nation WHERE nationkey < 5 ORDER BY nationkey; "
        "SELECT count(*) FROM lineitem; SELECT DECIMAL '1.50', DATE '2024-02-29'"
    )
    through = trino_cli(gateway.url, sql)
    direct = trino_cli(clusters[0].url, sql)
    assert through.returncode == direct.returncode == 0, through.stderr
    assert through.stdout == direct.stdout
    assert '"60175"' in through.stdout


def test_trino_cli_sees_errors_through_the_gateway(gateway, trino_cli):
    result = trino_cli(gateway.url, "SELECT * FROM tpch.tiny.nope")
    assert result.returncode == 1
    assert "Table 'tpch.tiny.nope' does not exist" in result.stderr


def test_client_headers_reach_the_backend_with_forwarded_headers(gateway, sims):
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    first = requests.post(
        f"{gateway.url}/v1/statement",
        data=b"SELECT 1",
        timeout=10,
        headers={"X-Trino-User": "u", "traceparent": traceparent, "X-Forwarded-For": "10.9.8.7"},
    )
    query_id = first.json()["id"]
    record = next(c.query(query_id) for c in sims if any(q["queryId"] == query_id for q in c.queries()))
    received = record["receivedHeaders"]
    assert received["traceparent"] == traceparent
    assert received["X-Forwarded-For"] == "10.9.8.7, 127.0.0.1"
    assert received["X-Forwarded-Host"] == gateway.url.removeprefix("http://")
    assert received["X-Forwarded-Proto"] == "http"
    assert received["Via"] == "1.1 trino-gateway"


def test_trino_cli_runs_a_transaction_through_the_gateway(make_gateway, sims, trino_cli):
    config = {
        "routing": {"router": "round-robin"},
        "backends": [{"name": s.name, "proxy_to": s.url} for s in sims[:2]],
    }
    gateway = make_gateway(config)
    result = trino_cli(gateway.url, "START TRANSACTION; SELECT 11; SELECT 12; SELECT 13; COMMIT")
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stdout.split() if line in ('"11"', '"12"', '"13"')] == ['"11"', '"12"', '"13"']
    ran = [
        (s.name, q["session"]["transactionId"])
        for s in sims[:2]
        for q in s.queries()
        if q["query"] in ("SELECT 11", "SELECT 12", "SELECT 13") and q["session"]["transactionId"]
    ]
    transaction_id = ran[-1][1]
    assert (
        len({where for where in ran if where[1] == transaction_id}) == 1
        and sum(1 for r in ran if r[1] == transaction_id) == 3
    )
