"""Which statements are explained, and how the cache tells two statements apart (sqlglot)."""

from __future__ import annotations

import pytest

from gateway.routing.estimates.estimate import NOT_EXPLAINABLE, UNPARSED
from gateway.routing.estimates.statement import read_statement

# What EXPLAIN never sees: statements the coordinator answers itself, and DDL.
NEVER_EXPLAINED = [
    "SET SESSION join_distribution_type = 'BROADCAST'",
    "RESET SESSION join_distribution_type",
    "USE tpch.tiny",
    "START TRANSACTION",
    "COMMIT",
    "ROLLBACK",
    "CREATE TABLE memory.default.t (a bigint)",
    "CREATE SCHEMA memory.s",
    "CREATE VIEW v AS SELECT 1",
    "DROP TABLE memory.default.t",
    "ALTER TABLE memory.default.t ADD COLUMN b bigint",
    "TRUNCATE TABLE memory.default.t",
    "COMMENT ON TABLE t IS 'x'",
    "GRANT SELECT ON t TO alice",
    "ANALYZE t",
    "SHOW TABLES FROM tpch.tiny",
    "SHOW SESSION",
    "DESCRIBE tpch.tiny.nation",
    "EXPLAIN SELECT 1",
    "EXPLAIN ANALYZE SELECT 1",
    "CALL system.runtime.kill_query('20240101_000000_00000_aaaaa')",
    "PREPARE q FROM SELECT 1",
    "EXECUTE q",
    "DEALLOCATE PREPARE q",
    "SET ROLE admin",
    "SELECT 1; SELECT 2",
    "",
]
EXPLAINED = [
    "SELECT * FROM tpch.tiny.nation",
    "WITH n AS (SELECT * FROM nation) SELECT count(*) FROM n",
    "VALUES (1, 2)",
    "TABLE tpch.tiny.nation",
    "SELECT 1 UNION ALL SELECT 2",
    "INSERT INTO memory.default.t SELECT 1",
    "CREATE TABLE memory.default.t AS SELECT * FROM tpch.tiny.nation",
    "UPDATE memory.default.t SET a = 1",
    "DELETE FROM memory.default.t WHERE a = 1",
    "MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN DELETE",
]


@pytest.mark.parametrize("sql", NEVER_EXPLAINED)
def test_statements_explain_cannot_plan_are_never_explained(sql):
    assert read_statement(sql).normalised is None
    assert read_statement(sql).why == NOT_EXPLAINABLE


@pytest.mark.parametrize("sql", EXPLAINED)
def test_queries_and_writes_are_explained(sql):
    assert read_statement(sql).normalised


def test_what_sqlglot_cannot_read_is_not_explained():
    assert read_statement("SELECT FROM WHERE").why == UNPARSED


def test_case_whitespace_and_comments_do_not_tell_statements_apart_literals_do():
    same = [
        "SELECT name FROM tpch.tiny.nation WHERE regionkey = 1 AND name = 'ALGERIA'",
        "select NAME\n  from TPCH.tiny.Nation  -- the nations\n where regionkey=1 and name='ALGERIA';",
        'SELECT /* hint */ "name" FROM "tpch"."tiny"."nation" WHERE regionkey = 1 AND name = \'ALGERIA\'',
    ]
    assert len({read_statement(sql).normalised for sql in same}) == 1
    other_literals = [
        "SELECT name FROM tpch.tiny.nation WHERE regionkey = 1 AND name = 'algeria'",
        "SELECT name FROM tpch.tiny.nation WHERE regionkey = 2 AND name = 'ALGERIA'",
    ]
    for sql in other_literals:
        assert read_statement(sql).normalised != read_statement(same[0]).normalised
