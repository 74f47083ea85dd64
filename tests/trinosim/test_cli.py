"""The real Trino CLI 446 (Java) against trinosim."""

from __future__ import annotations

import csv
import io
import json


def _lines(output: str) -> list[str]:
    # The CLI warns on stderr that it has no terminal; stdout holds only the result.
    return [line for line in output.splitlines() if line]


def test_cli_prints_region_as_csv(sim, trino_cli):
    result = trino_cli(sim.url, "SELECT regionkey, name FROM tpch.tiny.region ORDER BY regionkey")
    assert result.returncode == 0, result.stderr
    assert _lines(result.stdout) == ['"0","AFRICA"', '"1","AMERICA"', '"2","ASIA"', '"3","EUROPE"', '"4","MIDDLE EAST"']


def test_cli_csv_header_aggregate_and_session_schema(sim, trino_cli):
    result = trino_cli(
        sim.url,
        "SELECT r.name AS region, count(*) AS nations FROM nation n JOIN region r ON n.regionkey = r.regionkey "
        "GROUP BY r.name ORDER BY r.name",
        "--catalog",
        "tpch",
        "--schema",
        "tiny",
        "--output-format",
        "CSV_HEADER",
    )
    assert result.returncode == 0, result.stderr
    assert _lines(result.stdout) == [
        '"region","nations"',
        '"AFRICA","5"',
        '"AMERICA","5"',
        '"ASIA","5"',
        '"EUROPE","5"',
        '"MIDDLE EAST","5"',
    ]


def test_cli_runs_several_statements_with_use_in_between(sim, trino_cli):
    result = trino_cli(
        sim.url, "USE tpch.tiny; SELECT count(*) FROM lineitem; SELECT name FROM nation WHERE nationkey = 7"
    )
    assert result.returncode == 0, result.stderr
    assert "USE" in result.stderr
    assert _lines(result.stdout) == ['"60175"', '"GERMANY"']


def test_cli_reports_a_failed_query(sim, trino_cli):
    result = trino_cli(sim.url, "SELECT * FROM tpch.tiny.no_such_table")
    assert result.returncode == 1
    assert "failed: Table 'tpch.tiny.no_such_table' does not exist" in result.stderr


def test_cli_prints_typed_values(sim, trino_cli):
    result = trino_cli(
        sim.url,
        "SELECT DECIMAL '12.34', DATE '2024-01-02', true, ARRAY[1, 2], 2.5e0",
    )
    assert result.returncode == 0, result.stderr
    assert _lines(result.stdout) == ['"12.34","2024-01-02","true","[1, 2]","2.5"']


def test_cli_update_statements(sim, trino_cli):
    result = trino_cli(
        sim.url,
        "CREATE TABLE memory.default.cli_t (x integer); INSERT INTO memory.default.cli_t VALUES 1, 2; "
        "SELECT sum(x) FROM memory.default.cli_t; DROP TABLE memory.default.cli_t",
    )
    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE" in result.stderr and "INSERT: 2 rows" in result.stderr
    assert _lines(result.stdout) == ['"3"']


def test_cli_prints_a_json_plan(sim, trino_cli):
    result = trino_cli(sim.url, "EXPLAIN (FORMAT JSON) SELECT regionkey, count(*) FROM tpch.tiny.nation GROUP BY 1")
    assert result.returncode == 0, result.stderr
    # One CSV field: the plan, quoted, its quotes doubled, over many lines.
    (cell,) = next(csv.reader(io.StringIO(result.stdout)))
    plan = json.loads(cell)
    assert list(plan) == ["0", "1", "2"]
    assert plan["0"]["name"] == "Output"
