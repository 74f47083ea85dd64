"""The official ``trino`` Python client (dbapi) against trinosim."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from trino.exceptions import TrinoUserError

from tests.conftest import connect, run_query

NATION_FIRST_ROWS = [
    [0, "ALGERIA", 0, " haggle. carefully final deposits detect slyly agai"],
    [1, "ARGENTINA", 1, "al foxes promise slyly according to the regular accounts. bold requests alon"],
]


def test_nation_returns_the_25_real_rows(sim):
    rows = run_query(sim.url, "SELECT * FROM tpch.tiny.nation ORDER BY nationkey")
    assert len(rows) == 25
    assert rows[:2] == NATION_FIRST_ROWS
    assert rows[24][:3] == [24, "UNITED STATES", 1]


def test_region_has_the_5_real_rows(sim):
    rows = run_query(sim.url, "SELECT regionkey, name FROM tpch.tiny.region ORDER BY regionkey")
    assert rows == [[0, "AFRICA"], [1, "AMERICA"], [2, "ASIA"], [3, "EUROPE"], [4, "MIDDLE EAST"]]


def test_aggregate_and_unnamed_columns(sim):
    with connect(sim.url) as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT count(*), sum(nationkey), max(name) FROM tpch.tiny.nation")
        assert cursor.fetchall() == [[25, 300, "VIETNAM"]]
        assert [d.name for d in cursor.description] == ["_col0", "_col1", "_col2"]
        assert [d.type_code for d in cursor.description] == ["bigint", "bigint", "varchar"]


def test_join_with_region_uses_session_catalog_and_schema(sim):
    rows = run_query(
        sim.url,
        "SELECT r.name, count(*) AS nations FROM nation n JOIN region r ON n.regionkey = r.regionkey "
        "GROUP BY r.name ORDER BY r.name",
        catalog="tpch",
        schema="tiny",
    )
    assert rows == [["AFRICA", 5], ["AMERICA", 5], ["ASIA", 5], ["EUROPE", 5], ["MIDDLE EAST", 5]]


def test_large_result_spans_at_least_five_pages(sim):
    with connect(sim.url) as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT orderkey, linenumber, quantity FROM tpch.tiny.lineitem")
        rows = cursor.fetchall()
        query_id = cursor.query_id
    assert len(rows) == 60175
    assert len({(r[0], r[1]) for r in rows}) == 60175
    record = sim.query(query_id)
    data_polls = [r for r in record["requests"] if r["phase"] == "executing"]
    # 60175 rows at 4096 rows a page is 15 data pages, plus the final one.
    assert len(data_polls) >= 6


def test_typed_columns_come_back_as_python_values(sim):
    sql = (
        "SELECT CAST(1 AS BIGINT) AS b, CAST(2 AS INTEGER) AS i, 3.5e0 AS d, 'text' AS v, true AS ok, "
        "DATE '2024-01-02' AS dt, TIMESTAMP '2024-01-02 03:04:05.123' AS ts, DECIMAL '12.34' AS dec, "
        "ARRAY[1, 2, 3] AS arr, CAST(NULL AS VARCHAR) AS missing"
    )
    with connect(sim.url) as conn:
        cursor = conn.cursor()
        cursor.execute(sql)
        row = cursor.fetchone()
        types = {d.name: d.type_code for d in cursor.description}
    assert row == [
        1,
        2,
        3.5,
        "text",
        True,
        dt.date(2024, 1, 2),
        dt.datetime(2024, 1, 2, 3, 4, 5, 123000),
        Decimal("12.34"),
        [1, 2, 3],
        None,
    ]
    assert isinstance(row[7], Decimal)
    assert types["b"] == "bigint" and types["i"] == "integer" and types["d"] == "double"
    assert types["dec"] == "decimal(4,2)" and types["arr"] == "array(integer)" and types["ok"] == "boolean"
    assert types["dt"] == "date" and types["ts"].startswith("timestamp")


def test_nested_types_map_and_row(sim):
    rows = run_query(sim.url, "SELECT MAP(ARRAY['a', 'b'], ARRAY[1, 2]) AS m, ROW(1, 'x') AS r")
    assert rows[0][0] == {"a": 1, "b": 2}
    assert tuple(rows[0][1]) == (1, "x")


def test_zero_row_select_still_reports_columns(sim):
    with connect(sim.url) as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT name FROM tpch.tiny.nation WHERE nationkey < 0")
        assert cursor.fetchall() == []
        assert [d.name for d in cursor.description] == ["name"]


def test_use_sets_catalog_and_schema_for_later_statements(sim):
    with connect(sim.url) as conn:
        cursor = conn.cursor()
        cursor.execute("USE tpch.tiny")
        cursor.fetchall()
        assert conn._client_session.catalog == "tpch"
        assert conn._client_session.schema == "tiny"
        cursor.execute("SELECT count(*) FROM region")
        assert cursor.fetchall() == [[5]]


def test_set_session_comes_back_as_a_session_property(sim):
    with connect(sim.url) as conn:
        cursor = conn.cursor()
        cursor.execute("SET SESSION query_max_run_time = '2h'")
        cursor.fetchall()
        assert conn._client_session.properties == {"query_max_run_time": "2h"}
        cursor.execute("SHOW SESSION LIKE 'query_max_run_time'")
        assert cursor.fetchall()[0][:2] == ["query_max_run_time", "2h"]


def test_unknown_session_property_is_refused(sim):
    with pytest.raises(TrinoUserError) as error, connect(sim.url) as conn:
        conn.cursor().execute("SET SESSION no_such_property = 1")
    assert error.value.error_name == "INVALID_SESSION_PROPERTY"


def test_parameters_use_execute_immediate(sim):
    with connect(sim.url) as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT name FROM tpch.tiny.nation WHERE nationkey = ? OR name = ?", (3, "PERU"))
        assert sorted(r[0] for r in cursor.fetchall()) == ["CANADA", "PERU"]


def test_prepare_and_execute_through_the_prepared_statement_header(sim):
    with connect(sim.url, legacy_prepared_statements=True) as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT regionkey FROM tpch.tiny.region WHERE name = ?", ("ASIA",))
        assert cursor.fetchall() == [[2]]
    queries = [q["query"] for q in sim.queries()]
    assert any(q.startswith("PREPARE st_") for q in queries)
    assert any(q.startswith("EXECUTE st_") and "USING 'ASIA'" in q for q in queries)
    assert any(q.startswith("DEALLOCATE PREPARE st_") for q in queries)


def test_create_insert_and_ctas_report_update_types_and_counts(sim):
    with connect(sim.url, catalog="memory", schema="default") as conn:
        cursor = conn.cursor()
        cursor.execute("CREATE TABLE scratch_orders (id bigint, label varchar)")
        cursor.fetchall()
        assert cursor.update_type == "CREATE TABLE" and cursor.rowcount == -1
        cursor.execute("INSERT INTO scratch_orders VALUES (1, 'a'), (2, 'b'), (3, 'c')")
        cursor.fetchall()
        assert cursor.update_type == "INSERT" and cursor.rowcount == 3
        cursor.execute("CREATE TABLE scratch_copy AS SELECT * FROM scratch_orders WHERE id > 1")
        cursor.fetchall()
        assert cursor.rowcount == 2
        cursor.execute("SELECT label FROM memory.default.scratch_copy ORDER BY id")
        assert cursor.fetchall() == [["b"], ["c"]]
        cursor.execute("DROP TABLE scratch_copy")
        cursor.fetchall()
        cursor.execute("DROP TABLE scratch_orders")
        cursor.fetchall()
        assert cursor.update_type == "DROP TABLE"


def test_metadata_statements(sim):
    assert run_query(sim.url, "SHOW CATALOGS") == [["memory"], ["system"], ["tpch"]]
    assert ["tiny"] in run_query(sim.url, "SHOW SCHEMAS FROM tpch")
    tables = run_query(sim.url, "SHOW TABLES FROM tpch.tiny")
    assert ["lineitem"] in tables and ["nation"] in tables and len(tables) == 8
    columns = run_query(sim.url, "DESCRIBE tpch.tiny.nation")
    assert [c[:2] for c in columns] == [
        ["nationkey", "bigint"],
        ["name", "varchar"],
        ["regionkey", "bigint"],
        ["comment", "varchar"],
    ]


def test_session_functions_reflect_the_session(sim):
    rows = run_query(
        sim.url, "SELECT current_user, current_catalog, current_schema", user="carol", catalog="tpch", schema="tiny"
    )
    assert rows == [["carol", "tpch", "tiny"]]


def test_source_and_client_tags_are_recorded_per_query(sim):
    with connect(sim.url, source="etl-job", client_tags=["nightly", "team-a"]) as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT 1")
        cursor.fetchall()
        query_id = cursor.query_id
    session = sim.query(query_id)["session"]
    assert session["source"] == "etl-job"
    assert session["clientTags"] == ["nightly", "team-a"]
    assert session["user"] == "test"
