"""EXPLAIN in Trino's JSON shapes, through the official Python client: the distributed plan's
fragment map, the logical plan's tree, TYPE IO and VALIDATE, estimates from DuckDB's (and TPC-H's)
row counts, the text EXPLAIN left as it was, and the count of EXPLAINs a server received."""

from __future__ import annotations

import json
from typing import Any

import pytest
from trino.exceptions import TrinoUserError

from tests.conftest import connect, run_query

NODE_KEYS = ["id", "name", "descriptor", "outputs", "details", "estimates", "children"]
ESTIMATE_KEYS = ["outputRowCount", "outputSizeInBytes", "cpuCost", "memoryCost", "networkCost"]
THREE_WAY_JOIN = (
    "SELECT c.name, o.orderdate, l.extendedprice FROM {schema}.lineitem l "
    "JOIN {schema}.orders o ON l.orderkey = o.orderkey JOIN {schema}.customer c ON o.custkey = c.custkey"
)


def explain(url: str, sql: str, options: str = "FORMAT JSON", **session: Any) -> str:
    """The one cell EXPLAIN answers, checked to be the one varchar column Trino names ``Query Plan``."""
    with connect(url, **session) as conn:
        cursor = conn.cursor()
        cursor.execute(f"EXPLAIN ({options}) {sql}")
        rows = cursor.fetchall()
        columns = [(d.name, d.type_code) for d in cursor.description]
    assert columns == [("Query Plan", "varchar")]
    assert len(rows) == 1 and len(rows[0]) == 1
    return rows[0][0]


def nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = [node]
    for child in node["children"]:
        found.extend(nodes(child))
    return found


def all_nodes(plan: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [node for root in plan.values() for node in nodes(root)]


def names(plan: dict[str, dict[str, Any]]) -> list[str]:
    return [node["name"] for node in all_nodes(plan)]


def test_distributed_json_plan_is_trinos_fragment_map(sim):
    text = explain(sim.url, "SELECT regionkey, count(*) FROM tpch.tiny.nation GROUP BY regionkey")
    plan = json.loads(text)
    # Fragment ids as strings, 0 first; a Trino node's keys in Trino's order; estimates likewise.
    assert list(plan) == ["0", "1", "2"]
    for node in all_nodes(plan):
        assert list(node) == NODE_KEYS
        assert isinstance(node["id"], str) and isinstance(node["details"], list)
        assert all(list(o) == ["type", "name"] for o in node["outputs"])
        assert all(isinstance(v, str) for v in node["descriptor"].values())
        assert all(list(e) == ESTIMATE_KEYS for e in node["estimates"])
    root = plan["0"]
    assert root["name"] == "Output"
    assert root["descriptor"] == {"columnNames": "[regionkey, _col1]"}
    assert root["details"] == ["_col1 := count"]
    assert [n["name"] for n in nodes(root)] == ["Output", "RemoteSource"]
    assert nodes(root)[1]["descriptor"] == {"sourceFragmentIds": "[1]"}
    assert [n["name"] for n in nodes(plan["1"])] == ["Aggregate", "LocalExchange", "RemoteSource"]
    assert plan["1"]["descriptor"] == {"type": "FINAL", "keys": "[regionkey]", "hash": "[]"}
    assert [n["name"] for n in nodes(plan["2"])] == ["Aggregate", "TableScan"]
    scan = nodes(plan["2"])[1]
    assert scan["descriptor"] == {"table": "tpch:tiny:nation"}
    assert scan["outputs"] == [{"type": "bigint", "name": "regionkey"}]
    assert scan["estimates"] == [
        {"outputRowCount": 25.0, "outputSizeInBytes": 225.0, "cpuCost": 225.0, "memoryCost": 0.0, "networkCost": 0.0}
    ]
    # Laid out as Trino's JSON codec writes it.
    assert text.startswith('{\n  "0" : {\n    "id" : "')
    assert '"children" : [ ]' in text and '"outputRowCount" : 25.0,' in text
    # FORMAT JSON alone is the distributed plan, as Trino's default TYPE is DISTRIBUTED.
    distributed = explain(
        sim.url, "SELECT regionkey, count(*) FROM tpch.tiny.nation GROUP BY regionkey", "TYPE DISTRIBUTED, FORMAT JSON"
    )
    assert distributed == text


def test_unknown_estimates_are_the_string_nan_and_remote_sources_have_none(sim):
    text = explain(sim.url, "SELECT count(*) FROM tpch.tiny.nation")
    plan = json.loads(text)
    partial = next(n for n in all_nodes(plan) if n["descriptor"].get("type") == "PARTIAL")
    # A partial aggregation's cost is unknown, as in Trino: NaN, which Jackson writes as a string.
    unknown = {"cpuCost": "NaN", "memoryCost": "NaN", "networkCost": "NaN"}
    assert partial["estimates"] == [{"outputRowCount": 25.0, "outputSizeInBytes": 225.0, **unknown}]
    assert '"cpuCost" : "NaN"' in text
    remote_sources = [n for n in all_nodes(plan) if n["name"] == "RemoteSource"]
    assert remote_sources and all(n["estimates"] == [] for n in remote_sources)
    # count(*) reads no column: the scan has rows but no bytes, as Trino's.
    scan = next(n for n in all_nodes(plan) if n["name"] == "TableScan")
    assert scan["outputs"] == [] and scan["estimates"][0]["outputSizeInBytes"] == 0.0


def test_logical_json_plan_is_one_tree_with_remote_exchanges(sim):
    plan = json.loads(explain(sim.url, "SELECT count(*) FROM tpch.tiny.nation", "TYPE LOGICAL, FORMAT JSON"))
    assert list(plan) == NODE_KEYS
    assert [n["name"] for n in nodes(plan)] == [
        "Output",
        "Aggregate",
        "LocalExchange",
        "RemoteExchange",
        "Aggregate",
        "TableScan",
    ]
    exchange = nodes(plan)[3]
    assert exchange["descriptor"] == {
        "partitionCount": "",
        "scaleWriters": "",
        "type": "GATHER",
        "isReplicateNullsAndAny": "",
        "hashColumn": "[]",
    }
    # The same nodes and ids as the distributed plan, where the exchange is a RemoteSource.
    distributed = json.loads(explain(sim.url, "SELECT count(*) FROM tpch.tiny.nation"))
    remote_source = next(n for n in all_nodes(distributed) if n["name"] == "RemoteSource")
    assert remote_source["id"] == exchange["id"]


def test_three_way_join_is_estimated_orders_of_magnitude_above_nation_and_every_run_alike(sim):
    nation = json.loads(explain(sim.url, "SELECT * FROM tpch.tiny.nation"))
    join_text = explain(sim.url, THREE_WAY_JOIN.format(schema="tpch.tiny"))
    join = json.loads(join_text)
    nation_rows = nation["0"]["estimates"][0]["outputRowCount"]
    join_rows = join["0"]["estimates"][0]["outputRowCount"]
    assert nation_rows == 25.0
    assert join_rows >= 1000 * nation_rows
    assert join["0"]["estimates"][0]["outputSizeInBytes"] >= 100 * nation["0"]["estimates"][0]["outputSizeInBytes"]
    # What a router counts: fragments, joins, scans, remote exchanges; and the same text each time.
    assert len(join) == 4
    assert names(join).count("InnerJoin") == 2
    assert names(join).count("TableScan") == 3
    assert names(join).count("RemoteSource") == 3
    joins = [n for n in all_nodes(join) if n["name"] == "InnerJoin"]
    assert all(n["descriptor"]["distribution"] == "REPLICATED" for n in joins)
    assert all("Distribution: REPLICATED" in n["details"] for n in joins)
    assert all(n["estimates"][0]["memoryCost"] > 0 for n in joins)  # the build side is held
    assert {n["descriptor"]["criteria"] for n in joins} == {"(orderkey = orderkey_0)", "(custkey = custkey_1)"}
    for _ in range(2):
        assert explain(sim.url, THREE_WAY_JOIN.format(schema="tpch.tiny")) == join_text


def test_other_scale_factors_are_estimated_from_tpch_row_counts_without_running(sim):
    plan = json.loads(explain(sim.url, "SELECT * FROM tpch.sf100.lineitem"))
    scan = next(n for n in all_nodes(plan) if n["name"] == "TableScan")
    assert scan["descriptor"] == {"table": "tpch:sf100:lineitem"}
    assert scan["estimates"][0]["outputRowCount"] == 6_001_215 * 100  # TPC-H's lineitem rows at SF 1, x 100
    nation = json.loads(explain(sim.url, "SELECT * FROM tpch.sf100.nation"))
    assert nation["0"]["estimates"][0]["outputRowCount"] == 25.0  # nation and region do not grow

    join = json.loads(explain(sim.url, THREE_WAY_JOIN.format(schema="tpch.sf100")))
    tiny = json.loads(explain(sim.url, THREE_WAY_JOIN.format(schema="tpch.tiny")))
    assert join["0"]["estimates"][0]["outputRowCount"] >= 1000 * tiny["0"]["estimates"][0]["outputRowCount"]
    # Too big to broadcast: both sides are repartitioned, as Trino would past 100 MB.
    joins = [n for n in all_nodes(join) if n["name"] == "InnerJoin"]
    assert [n["descriptor"]["distribution"] for n in joins] == ["PARTITIONED", "PARTITIONED"]
    assert len(join) == 6

    # Planned, never read: trinosim holds tiny's rows only; nation is the same at every scale.
    with pytest.raises(TrinoUserError) as error, connect(sim.url) as conn:
        conn.cursor().execute("SELECT count(*) FROM tpch.sf100.lineitem")
    assert error.value.error_name == "NOT_SUPPORTED"
    assert run_query(sim.url, "SELECT count(*) FROM tpch.sf1000.nation") == [[25]]
    assert ["sf100"] in run_query(sim.url, "SHOW SCHEMAS FROM tpch")


def test_session_join_distribution_type_is_honoured(sim):
    sql = "SELECT n.name, r.name FROM tpch.tiny.nation n JOIN tpch.tiny.region r ON n.regionkey = r.regionkey"
    automatic = json.loads(explain(sim.url, sql))
    partitioned = json.loads(
        explain(sim.url, sql, session_properties={"join_distribution_type": "PARTITIONED"}),
    )
    assert next(n for n in all_nodes(automatic) if n["name"] == "InnerJoin")["descriptor"]["distribution"] == (
        "REPLICATED"
    )
    assert next(n for n in all_nodes(partitioned) if n["name"] == "InnerJoin")["descriptor"]["distribution"] == (
        "PARTITIONED"
    )
    assert len(partitioned) == len(automatic) + 1  # the probe side gets a fragment of its own


def test_io_plan_names_tables_constraints_and_estimates(sim):
    plan = json.loads(explain(sim.url, "SELECT name FROM tpch.tiny.nation WHERE regionkey = 1", "TYPE IO, FORMAT JSON"))
    assert list(plan) == ["inputTableColumnInfos", "estimate"]
    (table,) = plan["inputTableColumnInfos"]
    assert table["table"] == {"catalog": "tpch", "schemaTable": {"schema": "tiny", "table": "nation"}}
    assert table["constraint"] == {
        "none": False,
        "columnConstraints": [
            {
                "columnName": "regionkey",
                "type": "bigint",
                "domain": {
                    "nullsAllowed": False,
                    "ranges": [{"low": {"value": "1", "bound": "EXACTLY"}, "high": {"value": "1", "bound": "EXACTLY"}}],
                },
            }
        ],
    }
    assert list(table["estimate"]) == ["outputRowCount", "outputSizeInBytes", "cpuCost", "maxMemory", "networkCost"]
    assert table["estimate"]["outputRowCount"] == 25.0
    assert plan["estimate"]["outputRowCount"] == 5.0

    write = json.loads(
        explain(
            sim.url,
            "CREATE TABLE memory.default.explained_only AS SELECT * FROM tpch.sf1.orders",
            "TYPE IO",
        )
    )
    target = {"catalog": "memory", "schemaTable": {"schema": "default", "table": "explained_only"}}
    assert write["outputTable"] == target
    assert write["inputTableColumnInfos"][0]["estimate"]["outputRowCount"] == 1_500_000.0
    # EXPLAIN plans the write and runs nothing: the table is not there.
    assert ["explained_only"] not in run_query(sim.url, "SHOW TABLES FROM memory.default")


def test_validate_answers_valid_and_refuses_what_does_not_resolve(sim):
    with connect(sim.url) as conn:
        cursor = conn.cursor()
        cursor.execute("EXPLAIN (TYPE VALIDATE) SELECT * FROM tpch.sf100.orders")
        assert cursor.fetchall() == [[True]]
        assert [(d.name, d.type_code) for d in cursor.description] == [("Valid", "boolean")]
    with pytest.raises(TrinoUserError) as error, connect(sim.url) as conn:
        conn.cursor().execute("EXPLAIN (TYPE VALIDATE) SELECT * FROM tpch.tiny.nations")
    assert error.value.error_name == "TABLE_NOT_FOUND"
    with pytest.raises(TrinoUserError) as error, connect(sim.url) as conn:
        conn.cursor().execute("EXPLAIN (FORMAT XML) SELECT 1")
    assert error.value.error_name == "SYNTAX_ERROR"


def test_text_explain_and_explain_analyze_show_duckdbs_plan_as_before(sim):
    for sql in (
        "EXPLAIN SELECT * FROM tpch.tiny.nation WHERE regionkey = 1",
        "EXPLAIN (TYPE DISTRIBUTED) SELECT * FROM tpch.tiny.nation WHERE regionkey = 1",
        "EXPLAIN ANALYZE SELECT * FROM tpch.tiny.nation WHERE regionkey = 1",
    ):
        with connect(sim.url) as conn:
            cursor = conn.cursor()
            cursor.execute(sql)
            rows = cursor.fetchall()
            assert [d.name for d in cursor.description] == ["Query Plan"]
        assert len(rows) == 1
        assert "nation" in rows[0][0] and not rows[0][0].lstrip().startswith("{"), sql


def test_explains_are_counted_where_the_server_received_them(sim):
    before = sim.load()["explained"]
    explain(sim.url, "SELECT 1")
    explain(sim.url, "SELECT 1", "TYPE IO")
    run_query(sim.url, "EXPLAIN SELECT 1")
    run_query(sim.url, "EXPLAIN ANALYZE SELECT 1")  # runs its statement: not a plan request
    run_query(sim.url, "SELECT 1")
    assert sim.load()["explained"] - before == 3
