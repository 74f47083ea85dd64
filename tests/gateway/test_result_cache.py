"""The result cache through a running gateway: a dashboard query answered a second time without a
cluster (the Python client, the Trino CLI, the JavaScript client); what is never served from it; keys
that keep users, sessions and time zones apart; single flight; purging; what the history, the span,
the metrics and /gateway/health say."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
import trino.exceptions
from trino.transaction import IsolationLevel

from tests.conftest import connect, run_query
from tests.gateway.conftest import store_plays_no_part
from tests.inprocess import InProcessGateway
from tests.trinosim.helpers import wait_until
from trinosim.inprocess import InProcessSim
from trinosim.otlp_receiver import OtlpReceiver

pytestmark = store_plays_no_part


def cache_config(sims: list[InProcessSim], **group: Any) -> dict[str, Any]:
    """Group bi (trino-1, trino-2) caches for five minutes; group adhoc (trino-3), the default, does not."""
    return {
        "backends": [
            {"name": "trino-1", "proxy_to": sims[0].url, "routing_group": "bi"},
            {"name": "trino-2", "proxy_to": sims[1].url, "routing_group": "bi"},
            {"name": "trino-3", "proxy_to": sims[2].url, "routing_group": "adhoc"},
        ],
        "routing": {"default_group": "adhoc", "groups": {"bi": {"cache": {"ttl": "5m", **group}}}},
    }


@pytest.fixture
def gateway(make_gateway: Callable[..., InProcessGateway], sims: list[InProcessSim]) -> InProcessGateway:
    return make_gateway(cache_config(sims))


def dashboard_sql(rows: int = 25) -> str:
    """A statement no other test sends: the clusters' count of it is this test's alone."""
    return f"SELECT n.nationkey, n.name, n.regionkey, '{uuid.uuid4().hex}' AS tag FROM tpch.tiny.nation n LIMIT {rows}"


def at_clusters(sims: list[InProcessSim], sql: str) -> int:
    """How many times the clusters were sent ``sql``."""
    return sum(1 for sim in sims for query in sim.queries() if query["query"] == sql)


def run(gateway: InProcessGateway, sql: str, user: str = "alice", **options: Any) -> tuple[list[str], list[Any], dict]:
    """Column names, rows and the last statistics the Python client saw."""
    options.setdefault("http_headers", {"X-Trino-Routing-Group": "bi"})
    with connect(gateway.url, user=user, **options) as conn:
        cursor = conn.cursor()
        cursor.execute(sql)
        rows = cursor.fetchall()
        return [column[0] for column in cursor.description or []], rows, cursor.stats


def words(gateway: InProcessGateway, sql: str) -> list[str | None]:
    """The cache's word on each query of ``sql`` in the history, oldest first."""
    answer = requests.get(f"{gateway.url}/gateway/queries", params={"limit": 100}, timeout=10)
    answer.raise_for_status()
    found = [query for query in answer.json()["queries"] if query["query"] == sql]
    return [query["cache"] for query in sorted(found, key=lambda query: query["submittedAt"])]


def test_a_dashboard_query_run_twice_reaches_a_cluster_once_with_the_python_client(gateway, sims):
    sql = dashboard_sql()
    first = run(gateway, sql)
    ran = at_clusters(sims, sql)  # (1, or 2 should a busy machine have had it fail over)
    second = run(gateway, sql)
    assert second[0] == first[0] == ["nationkey", "name", "regionkey", "tag"]
    assert second[1] == first[1] and len(first[1]) == 25
    assert at_clusters(sims, sql) == ran  # the second run reached no cluster
    # The client's statistics say where the answer came from; the first one's do not.
    assert second[2]["resultCache"] == "HIT" and "resultCache" not in first[2]
    wait_until(lambda: words(gateway, sql) == ["miss", "hit"], what="the history's words")


def test_a_large_result_is_served_in_pages_with_its_types(make_gateway, sims):
    gateway = make_gateway({**cache_config(sims), "cache": {"page_bytes": 2048}})
    sql = f"SELECT *, '{uuid.uuid4().hex}' AS tag FROM tpch.tiny.customer"
    with connect(gateway.url, http_headers={"X-Trino-Routing-Group": "bi"}) as conn:
        cursor = conn.cursor()
        cursor.execute(sql)
        first, first_types = cursor.fetchall(), [column[1] for column in cursor.description]
    ran = at_clusters(sims, sql)
    with connect(gateway.url, http_headers={"X-Trino-Routing-Group": "bi"}) as conn:
        cursor = conn.cursor()
        cursor.execute(sql)
        second, second_types = cursor.fetchall(), [column[1] for column in cursor.description]
        assert cursor.stats["resultCache"] == "HIT"
    assert second == first and len(first) == 1500
    assert second_types == first_types and "double" in first_types
    assert at_clusters(sims, sql) == ran


def caching_by_default(sims: list[InProcessSim]) -> dict[str, Any]:
    """The CLI and the JavaScript client send no routing group: here the default group caches."""
    config = cache_config(sims)
    config["routing"]["default_group"] = "bi"
    return config


@pytest.mark.slow  # the CLI is a child process
def test_the_trino_cli_gets_the_same_answer_from_the_cache(make_gateway, sims, trino_cli):
    gateway = make_gateway(caching_by_default(sims))
    sql = dashboard_sql()
    outputs, ran = [], []
    for _ in range(2):
        done = trino_cli(gateway.url, sql, "--output-format", "CSV_HEADER")
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
        ran.append(at_clusters(sims, sql))
    assert outputs[0] == outputs[1] and outputs[0].count("\n") == 26
    assert ran[1] == ran[0] >= 1  # the second run reached no cluster


@pytest.mark.slow  # node, a child process
def test_the_javascript_client_gets_the_same_answer_from_the_cache(make_gateway, sims, trino_js):
    gateway = make_gateway(caching_by_default(sims))
    sql = dashboard_sql()
    first = trino_js(gateway.url, sql)
    ran = at_clusters(sims, sql)
    second = trino_js(gateway.url, sql)
    assert first["error"] is None and second["error"] is None
    assert second["rows"] == first["rows"] and len(first["rows"]) == 25
    assert second["columns"] == first["columns"]
    assert at_clusters(sims, sql) == ran >= 1


NEVER_CACHED = [
    "SELECT now()",
    "SELECT current_user",
    "SELECT count(*) FROM system.runtime.nodes",
]


@pytest.mark.parametrize("statement", NEVER_CACHED)
def test_time_caller_and_system_queries_are_never_served_from_the_cache(gateway, sims, statement):
    sql = f"{statement} -- {uuid.uuid4().hex}"
    run(gateway, sql)
    run(gateway, sql)
    assert at_clusters(sims, sql) == 2
    history = wait_until(lambda: (w := words(gateway, sql)) and len(w) == 2 and w, what="the history")
    assert all(word.startswith("not eligible: ") for word in history), history


def test_an_insert_and_a_query_in_a_transaction_are_never_served_from_the_cache(gateway, sims):
    table = f"memory.default.t{uuid.uuid4().hex[:12]}"
    for sim in sims[:2]:  # (group bi's two clusters: each statement may go to either)
        run_query(sim.url, f"CREATE TABLE {table} AS SELECT 1 AS x UNION ALL SELECT 2")
    insert = f"INSERT INTO {table} VALUES (3)"
    run(gateway, insert)
    run(gateway, insert)
    assert at_clusters(sims, insert) == 2
    sql = f"SELECT count(*) FROM {table}"
    for _ in range(2):
        with connect(
            gateway.url,
            user="alice",
            http_headers={"X-Trino-Routing-Group": "bi"},
            isolation_level=IsolationLevel.READ_COMMITTED,
        ) as conn:
            cursor = conn.cursor()
            cursor.execute(sql)
            assert cursor.fetchall() in ([[2]], [[3]], [[4]])
    assert at_clusters(sims, sql) == 2
    assert (
        wait_until(lambda: (w := words(gateway, sql)) and len(w) == 2 and w) == ["not eligible: in a transaction"] * 2
    )


def test_a_result_over_the_entry_limit_is_never_cached(make_gateway, sims):
    gateway = make_gateway({**cache_config(sims), "cache": {"max_entry_bytes": 4096}})
    sql = f"SELECT *, '{uuid.uuid4().hex}' AS tag FROM tpch.tiny.customer"
    first, second = run(gateway, sql), run(gateway, sql)
    assert first[1] == second[1] and len(first[1]) == 1500
    assert at_clusters(sims, sql) == 2


def test_another_user_never_gets_a_users_cached_result(gateway, sims):
    sql = dashboard_sql()
    run(gateway, sql, user="alice")
    run(gateway, sql, user="bob")
    assert at_clusters(sims, sql) == 2
    run(gateway, sql, user="bob")
    assert at_clusters(sims, sql) == 2  # bob's own entry


def test_a_user_who_only_names_another_never_gets_that_users_result(gateway, sims):
    """Without the gateway checking passwords, the cluster would: a client naming alice with other
    credentials is another owner."""
    sql = dashboard_sql()
    run(gateway, sql, user="alice", http_headers={"X-Trino-Routing-Group": "bi", "Authorization": "Basic YWxpY2U6cw=="})
    run(gateway, sql, user="alice", http_headers={"X-Trino-Routing-Group": "bi", "Authorization": "Basic YWxpY2U6eA=="})
    assert at_clusters(sims, sql) == 2


def test_a_shared_group_answers_every_user_from_one_entry(make_gateway, sims):
    gateway = make_gateway(cache_config(sims, shared=True))
    sql = dashboard_sql()
    run(gateway, sql, user="alice")
    assert run(gateway, sql, user="bob")[2]["resultCache"] == "HIT"
    assert at_clusters(sims, sql) == 1


@pytest.mark.parametrize(
    "other",
    [
        {"session_properties": {"query_max_run_time": "1h"}},
        {"timezone": "Asia/Tokyo"},
        {"catalog": "tpch", "schema": "tiny"},
    ],
    ids=["session property", "time zone", "catalog and schema"],
)
def test_the_same_sql_with_another_session_misses(gateway, sims, other):
    sql = dashboard_sql()
    run(gateway, sql)
    run(gateway, sql, **other)
    assert at_clusters(sims, sql) == 2


def test_client_tags_refuse_a_cached_answer_or_opt_in(make_gateway, sims):
    gateway = make_gateway(cache_config(sims, opt_in=True))
    sql = dashboard_sql()
    run(gateway, sql)
    run(gateway, sql)
    assert at_clusters(sims, sql) == 2  # opt-in: not asked for
    run(gateway, sql, client_tags=["cache"])
    assert run(gateway, sql, client_tags=["cache"])[2]["resultCache"] == "HIT"
    assert at_clusters(sims, sql) == 3
    assert "resultCache" not in run(gateway, sql, client_tags=["cache", "no-cache"])[2]
    assert at_clusters(sims, sql) == 4


def test_a_group_without_cache_settings_never_caches(gateway, sims):
    sql = dashboard_sql()
    for _ in range(2):
        run(gateway, sql, http_headers={}, client_tags=["cache"])  # adhoc, the default group
    assert at_clusters(sims, sql) == 2
    assert wait_until(lambda: (w := words(gateway, sql)) and len(w) == 2 and w) == [None, None]


def test_a_rule_turns_the_cache_on_for_the_queries_it_matches(make_gateway, sims, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        '---\nname: dashboards\ncondition: \'request.getHeader("X-Trino-Source") == "dashboard"\'\n'
        'actions: [\'result.put("cacheTtl", "5m")\']\n'
    )
    config = cache_config(sims)
    config["routing_rules"] = {"enabled": True, "rules_file": str(rules)}
    gateway = make_gateway(config)
    sql = dashboard_sql()
    for _ in range(2):
        run(gateway, sql, http_headers={}, source="dashboard")  # adhoc: only the rule turns it on
    assert at_clusters(sims, sql) == 1


def test_fifty_identical_queries_at_once_cause_one_query_at_the_cluster(gateway, sims):
    sql = dashboard_sql()
    slow = {"session_properties": {"sim_run_time": "1s"}}
    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(lambda _: run(gateway, sql, **slow)[1], range(50)))
    assert all(rows == answers[0] for rows in answers) and len(answers[0]) == 25
    assert at_clusters(sims, sql) == 1
    history = wait_until(lambda: (w := words(gateway, sql)) and len(w) == 50 and w, what="the history")
    assert sorted(set(history)) == ["miss", "waited"] and history.count("miss") == 1


def test_when_the_query_they_wait_for_fails_the_waiters_run_on_their_own_and_nothing_is_cached(gateway, sims):
    sql = dashboard_sql()
    slow = {"session_properties": {"sim_run_time": "3s"}}
    leader: dict[str, Any] = {}

    def lead() -> None:
        try:
            run(gateway, sql, **slow)
        except trino.exceptions.TrinoQueryError as error:
            leader["error"] = error

    first = threading.Thread(target=lead)
    first.start()
    running = wait_until(lambda: [q for sim in sims for q in sim.queries() if q["query"] == sql], what="the leader")
    with ThreadPoolExecutor(9) as pool:
        waiting = [pool.submit(run, gateway, sql, **slow) for _ in range(9)]
        cache = gateway.services.result_cache
        assert cache is not None
        wait_until(lambda: sum(flight.waiters for flight in cache.flights._flying.values()) == 9, what="9 waiters")
        # The leader fails at its cluster (as an operator's kill would fail it).
        owner = next(sim for sim in sims if any(q["query"] == sql for q in sim.queries()))
        requests.delete(f"{owner.url}/v1/query/{running[0]['queryId']}", headers={"X-Trino-User": "admin"}, timeout=10)
        rows = [future.result(timeout=60)[1] for future in waiting]
    first.join(timeout=60)
    assert "error" in leader
    assert all(len(answer) == 25 for answer in rows)
    assert at_clusters(sims, sql) == 10
    run(gateway, sql)  # nothing was cached: it runs again
    assert at_clusters(sims, sql) == 11


def post(gateway: InProcessGateway, sql: str) -> dict[str, Any]:
    """A submission as a bare HTTP client sends it: the statement's first page."""
    headers = {"X-Trino-User": "alice", "X-Trino-Routing-Group": "bi"}
    return requests.post(f"{gateway.url}/v1/statement", data=sql, headers=headers, timeout=10).json()


def cached_by_a_bare_client(gateway: InProcessGateway, sql: str) -> None:
    """``sql`` run to its end once, by the same bare client (another client's headers make another key)."""
    page = post(gateway, sql)
    while "nextUri" in page:
        page = requests.get(page["nextUri"], timeout=10).json()
    assert page["stats"]["state"] == "FINISHED"


def test_cancelling_a_cached_answer_works_and_reaches_no_cluster(gateway, sims):
    sql = dashboard_sql()
    cached_by_a_bare_client(gateway, sql)
    posted = post(gateway, sql)
    assert posted["stats"]["state"] == "QUEUED" and posted["stats"]["resultCache"] == "HIT"
    assert requests.delete(posted["nextUri"], timeout=10).status_code == 204
    assert requests.delete(f"{gateway.url}/v1/query/{posted['id']}", timeout=10).status_code == 204
    assert at_clusters(sims, sql) == 1
    # Its id is known to no cluster, and asking about it costs none a request.
    assert requests.get(f"{gateway.url}/v1/query/{posted['id']}", timeout=10).status_code == 404


def test_forged_and_garbage_page_uris_get_a_clear_answer(gateway, sims):
    sql = dashboard_sql()
    cached_by_a_bare_client(gateway, sql)
    posted = post(gateway, sql)
    page = requests.get(posted["nextUri"], timeout=10).json()
    assert len(page["data"]) == 25 and "nextUri" not in page and page["stats"]["state"] == "FINISHED"
    forged = posted["nextUri"].rsplit("/", 2)[0] + "/" + "0" * 64 + "/1"
    answer = requests.get(forged, timeout=10)
    assert answer.status_code == 200 and answer.json()["error"]["message"].startswith(
        "trino-gateway: the cached result"
    )
    assert requests.get(posted["nextUri"][:-1] + "7", timeout=10).status_code == 410
    assert requests.get(posted["nextUri"] + "/x", timeout=10).status_code == 404


def test_a_purge_empties_the_cache_and_is_audited(gateway, sims):
    sql = dashboard_sql()
    run(gateway, sql)
    answer = requests.delete(f"{gateway.url}/gateway/cache", params={"group": "bi"}, timeout=10)
    assert answer.status_code == 200 and answer.json() == {"group": "bi", "purged": 1}
    run(gateway, sql)
    assert at_clusters(sims, sql) == 2
    audit = requests.get(f"{gateway.url}/gateway/audit", timeout=10).json()
    assert any(entry["action"] == "cache.purge" and entry["target"] == "bi" for entry in audit["entries"])
    assert requests.delete(f"{gateway.url}/gateway/cache", timeout=10).json() == {"group": None, "purged": 1}


def test_hits_and_misses_show_in_the_cache_status_health_and_metrics(gateway, sims):
    sql = dashboard_sql()
    run(gateway, sql)
    run(gateway, sql)
    status = wait_until(
        lambda: (s := requests.get(f"{gateway.url}/gateway/cache", timeout=10).json())["groups"][0]["hits"] and s
    )
    bi = status["groups"][0]
    assert bi["group"] == "bi" and bi["ttlSeconds"] == 300 and bi["misses"] >= 1 and 0 < bi["hitRatio"] < 1
    assert status["tiers"]["memory"]["entries"] >= 1
    health = requests.get(f"{gateway.url}/gateway/health", timeout=10)
    assert int(health.headers["X-Trino-Gateway-Result-Cache-Hits"]) >= 1
    assert int(health.headers["X-Trino-Gateway-Result-Cache-Entries"]) >= 1
    metrics = requests.get(f"{gateway.url}/metrics", timeout=10).text
    assert 'trino_gateway_result_cache_queries_total{group="bi",result="hit"}' in metrics


def test_the_querys_span_says_what_the_cache_made_of_it(make_gateway, sims, monkeypatch):
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    with OtlpReceiver() as receiver:
        config = cache_config(sims)
        config["observability"] = {"tracing": {"endpoint": receiver.url}}
        gateway = make_gateway(config)
        sql = dashboard_sql()
        run(gateway, sql)
        run(gateway, sql)
        run(gateway, "SELECT now()")

        def submissions(got: list[Any]) -> list[Any]:
            return [s for s in got if s.name == "POST /v1/statement" and "trino.gateway.cache" in s.attributes]

        spans = receiver.wait_for(lambda got: len(submissions(got)) >= 3)
    said = sorted(span.attributes["trino.gateway.cache"] for span in submissions(spans))
    assert said == ["hit", "miss", "not eligible: depends on the time: now()/current_timestamp"]
