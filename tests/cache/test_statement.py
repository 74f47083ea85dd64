"""Which statements the result cache may answer (fail-closed), why the others never are, and how two
statements are told apart."""

from __future__ import annotations

import time

import pytest
import sqlglot
from sqlglot import exp

from gateway.cache.statement import DETERMINISTIC_FUNCTIONS, Examined, examine

CACHEABLE = [
    "SELECT * FROM tpch.tiny.nation",
    "SELECT n.name, r.name FROM tpch.tiny.nation n JOIN tpch.tiny.region r ON n.regionkey = r.regionkey",
    "SELECT a FROM t LEFT JOIN u USING (a) WHERE a IN (SELECT b FROM v)",
    "SELECT regionkey, count(*), sum(nationkey), avg(nationkey) FROM nation GROUP BY regionkey HAVING count(*) > 1",
    "SELECT name, row_number() OVER (PARTITION BY regionkey ORDER BY name) FROM nation",
    "WITH n AS (SELECT * FROM nation) SELECT count(*) FROM n",
    "SELECT 1 UNION ALL SELECT 2",
    "SELECT a FROM t INTERSECT SELECT a FROM u",
    "SELECT a FROM t EXCEPT SELECT a FROM u",
    "VALUES (1, 'a'), (2, 'b')",
    "TABLE tpch.tiny.nation",
    "(SELECT 1)",
    "SELECT CAST(a AS varchar), try_cast(b AS bigint) FROM t",
    "SELECT * FROM orders WHERE orderdate >= DATE '2024-01-01'",
    "SELECT date_trunc('day', ts), count(*) FROM events GROUP BY 1",
    "SELECT date_add('day', -7, DATE '2024-01-08'), date_diff('day', a, b) FROM t",
    "SELECT transform(xs, x -> x + 1), reduce(xs, 0, (s, x) -> s + x, s -> s) FROM t",
    "SELECT format_datetime(ts, 'yyyy-MM'), url_extract_host(u) FROM t",
    "SELECT * FROM t CROSS JOIN UNNEST(xs) WITH ORDINALITY AS u(x, n)",
    "SELECT a FROM t ORDER BY a OFFSET 5 FETCH FIRST 3 ROWS ONLY",
    "SELECT a FROM t LIMIT 10;",
    'SELECT "current_schema" FROM t',
    "SELECT * FROM hive.web.events FOR VERSION AS OF 3",
]


@pytest.mark.parametrize("sql", CACHEABLE)
def test_read_only_deterministic_queries_are_cacheable(sql):
    examined = examine(sql)
    assert examined.why_not is None
    assert examined.normalised


NOT_QUERIES = [
    ("INSERT INTO t VALUES (1)", "not a query (INSERT)"),
    ("INSERT INTO t SELECT * FROM u", "not a query (INSERT)"),
    ("UPDATE t SET a = 1", "not a query (UPDATE)"),
    ("DELETE FROM t WHERE a = 1", "not a query (DELETE)"),
    ("MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN DELETE", "not a query (MERGE)"),
    ("CREATE TABLE t (a bigint)", "not a query (CREATE TABLE)"),
    ("CREATE TABLE t AS SELECT 1", "not a query (CREATE TABLE)"),
    ("CREATE VIEW v AS SELECT 1", "not a query (CREATE VIEW)"),
    ("DROP TABLE t", "not a query (DROP TABLE)"),
    ("ALTER TABLE t ADD COLUMN b bigint", "not a query (ALTER)"),
    ("TRUNCATE TABLE t", "not a query (TRUNCATE TABLE)"),
    ("GRANT SELECT ON t TO alice", "not a query (GRANT)"),
    ("SHOW TABLES", "not a query (SHOW)"),
    ("SHOW CREATE TABLE t", "not a query (SHOW)"),
    ("EXPLAIN SELECT 1", "not a query (EXPLAIN)"),
    ("EXPLAIN ANALYZE SELECT 1", "not a query (EXPLAIN)"),
    ("DESCRIBE t", "not a query (DESCRIBE)"),
    ("CALL system.runtime.kill_query('20240101_000000_00000_aaaaa')", "not a query (CALL)"),
    ("SET SESSION join_distribution_type = 'BROADCAST'", "not a query (SET)"),
    ("SET ROLE admin", "not a query (SET)"),
    ("RESET SESSION join_distribution_type", "not a query (RESET SESSION)"),
    ("USE tpch.tiny", "not a query (USE)"),
    ("PREPARE q FROM SELECT 1", "not a query (PREPARE)"),
    ("EXECUTE q", "not a query (EXECUTE)"),
    ("DEALLOCATE PREPARE q", "not a query (DEALLOCATE PREPARE)"),
    ("START TRANSACTION", "not a query (START TRANSACTION)"),
    ("COMMIT", "not a query (COMMIT)"),
    ("ROLLBACK", "not a query (ROLLBACK)"),
    ("SELECT a INTO t FROM u", "not a query (SELECT INTO)"),
]


@pytest.mark.parametrize(("sql", "why_not"), NOT_QUERIES)
def test_anything_but_a_query_is_never_cached_and_its_kind_is_named(sql, why_not):
    assert examine(sql) == Examined(None, why_not)


NOT_DETERMINISTIC = [
    ("SELECT now()", "depends on the time: now()/current_timestamp"),
    ("SELECT current_timestamp", "depends on the time: now()/current_timestamp"),
    ("SELECT current_timestamp(3)", "depends on the time: now()/current_timestamp"),
    ("SELECT current_date - INTERVAL '1' DAY", "depends on the time: current_date"),
    ("SELECT current_time", "depends on the time: current_time"),
    ("SELECT localtime", "depends on the time: localtime"),
    ("SELECT localtimestamp", "depends on the time: localtimestamp"),
    ("SELECT random()", "non-deterministic: random()"),
    ("SELECT rand()", "non-deterministic: random()"),
    ("SELECT random(10)", "non-deterministic: random()"),
    ("SELECT uuid()", "non-deterministic: uuid()"),
    ("SELECT shuffle(ARRAY[1, 2, 3])", "non-deterministic: shuffle()"),
    ("SELECT current_user", "depends on the caller: current_user"),
    ("SELECT current_role", "depends on the caller: current_role"),
    ("SELECT current_catalog", "depends on the caller: current_catalog"),
    ("SELECT current_schema", "depends on the caller: current_schema"),
    ("SELECT current_path", "depends on the caller: current_path"),
    ("SELECT current_timezone()", "depends on the caller: current_timezone()"),
    ("SELECT current_groups()", "depends on the caller: current_groups()"),
    ("SELECT version()", "depends on the cluster: version()"),
]


@pytest.mark.parametrize(("sql", "why_not"), NOT_DETERMINISTIC)
def test_what_depends_on_time_chance_or_caller_is_never_cached(sql, why_not):
    assert examine(sql) == Examined(None, why_not)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM t WHERE ts > now() - INTERVAL '1' HOUR",
        "SELECT * FROM t WHERE a IN (SELECT a FROM u WHERE d = current_date)",
        "WITH recent AS (SELECT * FROM t WHERE ts > now()) SELECT count(*) FROM recent",
        "SELECT * FROM t JOIN u ON t.a = u.a AND u.owner = current_user",
        "SELECT 1 UNION ALL SELECT random()",
        "VALUES (1), (uuid())",
        "SELECT transform(xs, x -> x + random()) FROM t",
        "SELECT * FROM (SELECT * FROM (SELECT localtimestamp) a) b",
        "SELECT count(*) OVER (ORDER BY a) FROM t WHERE ts < current_timestamp",
        "SELECT * FROM t FOR TIMESTAMP AS OF now()",
    ],
)
def test_a_non_deterministic_part_anywhere_in_the_query_keeps_it_out(sql):
    examined = examine(sql)
    assert examined.normalised is None
    assert examined.why_not.startswith(("depends on the time", "non-deterministic", "depends on the caller"))


@pytest.mark.parametrize(
    ("sql", "why_not"),
    [
        ("SELECT foo(1)", "unknown function: foo()"),
        ("SELECT a FROM t WHERE my_udf(a) > 0", "unknown function: my_udf()"),
        ("SELECT sleep(1)", "unknown function: sleep()"),
        ("SELECT example.udf.abs(a) FROM t", "unknown function: example.udf.abs()"),
        ("SELECT system.builtin.now()", "unknown function: system.builtin.now()"),
        ("WITH FUNCTION abs(x integer) RETURNS integer RETURN 1 SELECT abs(-1)", "defines a function: abs()"),
    ],
)
def test_functions_not_known_to_be_deterministic_are_never_cached(sql, why_not):
    assert examine(sql) == Examined(None, why_not)


@pytest.mark.parametrize("name", sorted(DETERMINISTIC_FUNCTIONS))
def test_each_listed_deterministic_function_parses_as_a_function_sqlglot_lets_through(name):
    """The list is for functions sqlglot does not model; should a later sqlglot model one, it must
    not be as something refused."""
    for arity in range(4):
        args = ", ".join(["a"] * arity)
        try:
            node = sqlglot.parse_one(f"SELECT {name}({args})", read="trino").expressions[0]
        except sqlglot.errors.ParseError:
            continue  # a known class that wants another number of arguments
        assert isinstance(node, exp.Func)
        assert examine(f"SELECT {name}({args}) FROM t").why_not is None
        return
    pytest.fail(f"{name} does not parse with up to three arguments")


def test_the_refused_time_and_random_functions_parse_as_what_is_refused():
    """Each such function is refused because of the class sqlglot reads it as: the test holds when a
    later sqlglot reads one differently."""
    expected = {
        "now()": exp.CurrentTimestamp,
        "current_timestamp": exp.CurrentTimestamp,
        "current_date": exp.CurrentDate,
        "current_time": exp.CurrentTime,
        "localtime": exp.Localtime,
        "localtimestamp": exp.Localtimestamp,
        "current_user": exp.CurrentUser,
        "current_catalog": exp.CurrentCatalog,
        "current_timezone()": exp.CurrentTimezone,
        "random()": exp.Rand,
        "rand()": exp.Rand,
        "uuid()": exp.Uuid,
        "shuffle(ARRAY[1])": exp.Shuffle,
        "version()": exp.CurrentVersion,
    }
    for sql, cls in expected.items():
        assert isinstance(sqlglot.parse_one(f"SELECT {sql}", read="trino").expressions[0], cls), sql


@pytest.mark.parametrize(
    ("sql", "why_not"),
    [
        ("SELECT * FROM t TABLESAMPLE BERNOULLI (10)", "samples rows at random: TABLESAMPLE"),
        ("SELECT * FROM t TABLESAMPLE SYSTEM (10)", "samples rows at random: TABLESAMPLE"),
        ("SELECT * FROM TABLE(sequence(1, 10))", "calls a table function"),
        ("SELECT * FROM TABLE(system.query(query => 'SELECT 1'))", "calls a table function"),
        ("SELECT * FROM t WHERE a = ?", "has a parameter: ?"),
    ],
)
def test_sampling_table_functions_and_parameters_are_never_cached(sql, why_not):
    assert examine(sql) == Examined(None, why_not)


@pytest.mark.parametrize(
    ("sql", "why_not"),
    [
        ("SELECT * FROM system.runtime.queries", "reads system.runtime.queries"),
        ('SELECT * FROM "SYSTEM"."Runtime"."Nodes"', "reads system.runtime.nodes"),
        ("SELECT * FROM system.metadata.catalogs", "reads system.metadata.catalogs"),
        ("SELECT * FROM t JOIN system.runtime.tasks s ON t.a = s.a", "reads system.runtime.tasks"),
        ("SELECT * FROM hive.information_schema.tables", "reads information_schema"),
        ("SELECT * FROM information_schema.columns", "reads information_schema"),
        ("SELECT * FROM t WHERE a IN (SELECT table_name FROM information_schema.tables)", "reads information_schema"),
        ("SELECT * FROM runtime.nodes", "may read the system catalog: runtime.nodes"),
        ("SELECT * FROM metadata.catalogs", "may read the system catalog: metadata.catalogs"),
        ("SELECT * FROM jdbc.tables", "may read the system catalog: jdbc.tables"),
    ],
)
def test_the_system_catalog_and_information_schema_are_never_cached(sql, why_not):
    assert examine(sql) == Examined(None, why_not)


@pytest.mark.parametrize(
    "sql",
    ["SELECT * FROM hive.runtime.nodes", "SELECT * FROM systems.runtime.queries", "SELECT * FROM web.events"],
)
def test_tables_outside_the_system_catalog_are_cacheable(sql):
    assert examine(sql).why_not is None


def test_case_whitespace_comments_and_quotes_do_not_tell_statements_apart():
    same = [
        "SELECT a FROM t",
        "select A from T -- x",
        'SELECT /* hint */ "a"\n  FROM "T";',
        "  SeLeCt   a\tFROM t  ;  ",
    ]
    assert len({examine(sql).normalised for sql in same}) == 1
    assert examine(same[0]).normalised == 'SELECT "a" FROM "t"'


def test_literals_tell_statements_apart():
    upper = examine("SELECT * FROM t WHERE name = 'ABC'").normalised
    lower = examine("SELECT * FROM t WHERE name = 'abc'").normalised
    assert upper and lower and upper != lower
    assert examine("SELECT * FROM t WHERE a = 1").normalised != examine("SELECT * FROM t WHERE a = 2").normalised


@pytest.mark.parametrize(
    "sql", ["SELECT FROM WHERE", "garbage !!", "SELECT (((", "SELECT 'unterminated", "\x00\x01", "nation", "1 + 1"]
)
def test_what_sqlglot_cannot_read_is_never_cached(sql):
    assert examine(sql) == Examined(None, "cannot be parsed")


@pytest.mark.parametrize("sql", ["", "   ", ";", "-- only a comment", "SELECT 1; SELECT 2"])
def test_none_or_several_statements_are_never_cached(sql):
    assert examine(sql) == Examined(None, "not one statement")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT " + "(" * 5000 + "1" + ")" * 5000,
        "SELECT " + "CASE WHEN a THEN " * 3000 + "1" + " END" * 3000,
        "SELECT " + "abs(" * 3000 + "1" + ")" * 3000,
    ],
)
def test_deeply_nested_expressions_are_refused_without_raising(sql):
    examined = examine(sql)
    assert examined.normalised is None
    assert examined.why_not


def test_a_long_dashboard_query_is_examined_quickly():
    in_list = ", ".join(f"'{i:08d}'" for i in range(20_000))  # some 220 KB
    sql = f"SELECT region, count(*) FROM sales WHERE sku IN ({in_list}) GROUP BY region"
    started = time.monotonic()
    examined = examine(sql)
    assert examined.why_not is None
    assert time.monotonic() - started < 10
