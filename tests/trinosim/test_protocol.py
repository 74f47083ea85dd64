"""Protocol details real clients and gateways depend on, checked on the wire."""

from __future__ import annotations

import re

import pytest
import requests
from trino.exceptions import TrinoUserError

from tests.conftest import connect
from tests.trinosim.helpers import follow, submit

QUERY_ID = re.compile(r"^\d{8}_\d{6}_\d{5}_[a-z0-9]{5}$")


def test_syntax_error_reaches_the_client_as_trino_user_error(sim):
    with pytest.raises(TrinoUserError) as error, connect(sim.url) as conn:
        conn.cursor().execute("SELECT * FROM tpch.tiny.nation WHERE")
    assert error.value.error_name == "SYNTAX_ERROR"
    assert error.value.error_code == 1
    assert error.value.error_type == "USER_ERROR"
    assert error.value.message.startswith("line 1:")


def test_unknown_table_is_table_not_found(sim):
    with pytest.raises(TrinoUserError) as error, connect(sim.url) as conn:
        conn.cursor().execute("SELECT * FROM tpch.tiny.missing_table")
    assert error.value.error_name == "TABLE_NOT_FOUND"
    assert error.value.error_code == 46
    assert error.value.message == "Table 'tpch.tiny.missing_table' does not exist"


def test_unknown_catalog_schema_and_column(sim):
    cases = {
        "SELECT * FROM nocat.tiny.nation": "CATALOG_NOT_FOUND",
        "SELECT * FROM tpch.noschema.nation": "SCHEMA_NOT_FOUND",
        "SELECT no_column FROM tpch.tiny.nation": "COLUMN_NOT_FOUND",
        "SELECT * FROM nation": "MISSING_SCHEMA_NAME",
    }
    for sql, name in cases.items():
        with pytest.raises(TrinoUserError) as error, connect(sim.url) as conn:
            conn.cursor().execute(sql)
        assert error.value.error_name == name, sql


def test_request_without_user_is_refused_like_trino(sim):
    response = requests.post(f"{sim.url}/v1/statement", data=b"SELECT 1", timeout=10)
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.text == "User must be set"


def test_empty_statement_and_bad_session_headers_are_400(sim):
    empty = requests.post(f"{sim.url}/v1/statement", data=b"  ", headers={"X-Trino-User": "a"}, timeout=10)
    assert (empty.status_code, empty.text) == (400, "SQL statement is empty")
    schema_only = requests.post(
        f"{sim.url}/v1/statement", data=b"SELECT 1", headers={"X-Trino-User": "a", "X-Trino-Schema": "tiny"}, timeout=10
    )
    assert (schema_only.status_code, schema_only.text) == (400, "Schema is set but catalog is not")


def test_post_answer_is_queued_with_trino_query_id_and_absolute_uris(sim):
    first = submit(sim.url, "SELECT 1")
    assert QUERY_ID.match(first["id"])
    assert first["stats"]["state"] == "QUEUED"
    assert first["nextUri"].startswith(f"{sim.url}/v1/statement/queued/{first['id']}/y")
    assert first["nextUri"].endswith("/1")
    assert first["infoUri"] == f"{sim.url}/ui/query.html?{first['id']}"
    assert "columns" not in first and "data" not in first and first["warnings"] == []


def test_every_executing_page_carries_columns_and_the_last_has_no_next_uri(sim):
    pages = follow(submit(sim.url, "SELECT orderkey FROM tpch.tiny.orders", **{"X-Trino-Catalog": "tpch"}))
    executing = [p for p in pages if "/executing/" in pages[pages.index(p) - 1].get("nextUri", "")]
    assert executing, "the query never reached the executing phase"
    data_pages = [p for p in executing if "data" in p]
    assert len(data_pages) >= 4
    assert all("columns" in p for p in executing if "data" in p or "nextUri" not in p)
    assert all(p["data"] for p in data_pages), "an empty page must leave out data, not send []"
    final = pages[-1]
    assert "nextUri" not in final and final["stats"]["state"] == "FINISHED"
    assert final["columns"][0]["typeSignature"] == {"rawType": "bigint", "arguments": []}
    assert sum(len(p["data"]) for p in data_pages) == 15000


def test_repeated_get_of_the_last_token_returns_the_identical_page(sim):
    first = submit(sim.url, "SELECT name FROM tpch.tiny.region ORDER BY name")
    pages = follow(first)
    # Re-fetch the URI that produced the final page.
    last_uri = pages[-2]["nextUri"]
    again = requests.get(last_uri, timeout=10)
    once_more = requests.get(last_uri, timeout=10)
    assert again.status_code == 200 and again.content == once_more.content
    assert again.json()["stats"]["state"] == "FINISHED"


def test_old_token_is_gone_and_a_token_past_the_end_is_not_found(sim):
    first = submit(sim.url, "SELECT orderkey FROM tpch.tiny.orders", **{"X-Trino-Catalog": "tpch"})
    pages = follow(first)
    executing_uris = [p["nextUri"] for p in pages if "nextUri" in p and "/executing/" in p["nextUri"]]
    assert requests.get(executing_uris[0], timeout=10).status_code == 410
    base, token = executing_uris[-1].rsplit("/", 1)
    beyond = requests.get(f"{base}/{int(token) + 1}", timeout=10)
    assert beyond.status_code == 404


def test_delete_answers_204_for_running_and_finished_queries_and_404_when_unknown(sim):
    first = submit(sim.url, "SELECT 1")
    pages = follow(first)
    finished_uri = pages[-2]["nextUri"]
    assert requests.delete(finished_uri, timeout=10).status_code == 204
    assert sim.query(first["id"])["state"] == "FINISHED"

    slow = submit(sim.url, "SELECT 1", **{"X-Trino-Session": "sim_run_time=30s"})
    assert requests.delete(slow["nextUri"], timeout=10).status_code == 204
    after = requests.get(slow["nextUri"], timeout=10).json()
    assert after["error"]["errorName"] == "USER_CANCELED" and "nextUri" not in after

    unknown = finished_uri.replace(first["id"], "20200101_000000_00000_zzzzz")
    assert requests.delete(unknown, timeout=10).status_code == 404
    assert requests.get(unknown, timeout=10).status_code == 404


def test_long_poll_holds_a_running_query_for_up_to_a_second(sim):
    import time

    first = submit(sim.url, "SELECT 1", **{"X-Trino-Session": "sim_run_time=30s"})
    queued = requests.get(first["nextUri"], timeout=10).json()
    started = time.monotonic()
    page = requests.get(queued["nextUri"], timeout=10).json()
    held = time.monotonic() - started
    assert page["stats"]["state"] == "RUNNING" and "nextUri" in page and "data" not in page
    assert held >= 0.5
    quick = time.monotonic()
    requests.get(page["nextUri"] + "?maxWait=50ms", timeout=10)
    assert time.monotonic() - quick < held
    requests.delete(page["nextUri"], timeout=10)


def test_set_session_and_prepare_response_headers(sim):
    pages = follow(submit(sim.url, "SET SESSION query_max_run_time = '1h'"))
    assert pages[-1]["updateType"] == "SET SESSION"
    response = requests.get(follow(submit(sim.url, "SET SESSION query_max_run_time = '1h'"))[-2]["nextUri"], timeout=10)
    assert response.headers["X-Trino-Set-Session"] == "query_max_run_time=1h"
    prepared = follow(submit(sim.url, "PREPARE my_query FROM SELECT * FROM tpch.tiny.nation WHERE nationkey = ?"))
    last = requests.get(prepared[-2]["nextUri"], timeout=10)
    assert last.headers["X-Trino-Added-Prepare"] == ("my_query=SELECT+*+FROM+tpch.tiny.nation+WHERE+nationkey+%3D+%3F")


def test_forwarded_headers_shape_the_uris_and_are_recorded(sim):
    first = submit(
        sim.url,
        "SELECT 1",
        **{
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "gateway.example",
            "X-Forwarded-Port": "8443",
            "X-Forwarded-For": "10.1.2.3",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        },
    )
    assert first["nextUri"].startswith("https://gateway.example:8443/v1/statement/queued/")
    record = sim.query(first["id"])
    assert record["receivedHeaders"]["X-Forwarded-For"] == "10.1.2.3"
    assert record["receivedHeaders"]["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c")
    requests.get(first["nextUri"].replace("https://gateway.example:8443", sim.url), timeout=10)


def test_forwarded_reject_mode_refuses_like_trino_without_process_forwarded(sim_factory):
    server = sim_factory(name="strict", forwarded="reject")
    response = requests.post(
        f"{server.url}/v1/statement",
        data=b"SELECT 1",
        headers={"X-Trino-User": "a", "X-Forwarded-For": "10.0.0.1"},
        timeout=10,
    )
    assert response.status_code == 406
    assert "X-Forwarded-For" in response.text


@pytest.mark.parametrize("key_order", ["sorted", "next_last"])
def test_pages_can_be_written_in_another_key_order_and_clients_read_them_the_same(make_sim, key_order):
    reordered = make_sim(name=f"order-{key_order}", key_order=key_order)
    plain = make_sim(name="order-trino")
    sql = "SELECT * FROM tpch.tiny.orders ORDER BY orderkey"
    with connect(plain.url) as direct, connect(reordered.url) as other:
        expected = direct.cursor().execute(sql).fetchall()
        assert other.cursor().execute(sql).fetchall() == expected
    first = requests.post(f"{reordered.url}/v1/statement", data=sql.encode(), headers={"X-Trino-User": "u"}, timeout=10)
    page = requests.get(first.json()["nextUri"], timeout=10)
    while b'"data"' not in page.content:
        page = requests.get(page.json()["nextUri"], timeout=10)
    keys = list(page.json())
    if key_order == "sorted":
        assert keys == sorted(keys)
    else:
        assert keys[-1] == "nextUri" and keys.index("infoUri") < keys.index("data")
    requests.delete(page.json()["nextUri"], timeout=10)
