"""The benchmark's own tools: figures are not asserted, but the code that produces them must work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import rewrite, wrk
from bench.__main__ import print_table
from bench.scenarios import pinned, routing_decision

WRK_OUTPUT = """Running 1s test @ http://127.0.0.1:1
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     6.07ms    2.01ms  35.83ms   73.92%
  Latency Distribution
     50%    5.53ms
     75%    6.10ms
     90%    7.20ms
     99%  812.00us
  4321 requests in 1.00s, 2.50MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   4321.44
"""


def test_wrk_output_is_read_with_units_and_errors(monkeypatch):
    class Finished:
        returncode = 0
        stdout = WRK_OUTPUT
        stderr = ""

    monkeypatch.setattr(wrk.shutil, "which", lambda _: "/usr/bin/wrk")
    monkeypatch.setattr(wrk.subprocess, "run", lambda *a, **k: Finished())
    result = wrk.run_wrk("http://127.0.0.1:1", ["/a", "/b"], 32, 1)
    assert result.requests_per_second == pytest.approx(4321.44)
    assert result.p50_ms == pytest.approx(5.53) and result.p99_ms == pytest.approx(0.812)
    assert result.errors == 7


@pytest.mark.parametrize(("rate", "delay"), [(None, None), (2000.0, "16.000")])
def test_a_paced_run_waits_between_requests_on_each_connection(monkeypatch, rate, delay):
    scripts = []

    class Finished:
        returncode = 0
        stdout = WRK_OUTPUT
        stderr = ""

    def run(command, **_):
        scripts.append(Path(command[command.index("-s") + 1]).read_text())
        return Finished()

    monkeypatch.setattr(wrk.shutil, "which", lambda _: "/usr/bin/wrk")
    monkeypatch.setattr(wrk.subprocess, "run", run)
    wrk.run_wrk("http://127.0.0.1:1", ["/a"], 32, 1, rate=rate)
    if delay is None:
        assert "delay" not in scripts[0]
    else:
        # 32 connections sharing 2,000 requests/s: each waits 16 ms after an answer.
        assert f"delay = function()\n  return {delay}\nend" in scripts[0]


def test_routing_decision_is_measured_per_backend_and_rule_count():
    figures = routing_decision([1, 10], [0, 100], iterations=200)
    cells = {(f["backends"], f["rules"], f["rule_kind"]) for f in figures.values()}
    assert cells == {(1, 0, None), (10, 0, None)} | {(n, 100, k) for n in (1, 10) for k in ("==", "contains")}
    assert all(f["microseconds"] > 0 for f in figures.values())


def test_the_table_prints_every_section(capsys):
    row = {"requests_per_second": 1000.0, "p50_ms": 1.0, "p99_ms": 2.0}
    paced = {**row, "paced_rate": 2000.0, "paced_p50_ms": 0.5, "paced_p99_ms": 0.9}

    def e2e_row(gateway_seconds: float) -> dict:
        return {
            "queries": 1,
            "direct": {"seconds": 1.0, "queries_per_second": 1.0},
            "gateway": {"seconds": gateway_seconds, "queries_per_second": round(1 / gateway_seconds, 1)},
            "ratio_gateway_direct": gateway_seconds,
        }

    report = {
        "machine": {"cpus": 2},
        "gateway_workers": 1,
        "poll_path": {name: {32: row, "32@2000/s": row} for name in ("direct", "nginx", "gateway")},
        "end_to_end": {"small": e2e_row(1.1)},
        "end_to_end_gateway_own_core": {"small": e2e_row(1.0)},
        "scale_of_state": {
            "queries_in_flight": 10,
            "rss_added_mb": 1,
            "bytes_per_query": 100,
            "control_bytes_per_query": 90,
            "idle_poll": paced | {"control_paced_p50_ms": 1.0, "backend_paced_p50_ms": 0.5},
            "loaded_poll": paced | {"control_paced_p50_ms": 1.1, "backend_paced_p50_ms": 0.6},
            "p50_ratio_loaded_idle": 1.0,
            "paced_p50_ratio_loaded_idle": 1.0,
            "control_paced_p50_ratio_loaded_idle": 1.1,
            "backend_paced_p50_ratio_loaded_idle": 1.2,
        },
        "routing_decision_us": {1: {"microseconds": 1.0}},
        "large_result": {
            "megabytes": 200,
            "rows": 1,
            "pages": 1,
            "seconds": 1,
            "megabytes_per_second": 200,
            "rss_before_mb": 1,
            "rss_peak_mb": 2,
            "rss_growth_mb": 1,
        },
        "rewrite_uris_us": {
            "orders": {"bytes": 500_000, "microseconds": 18.0, "complete": True},
            "orders, nextUri last": {"bytes": 500_000, "microseconds": 17.0, "complete": False},
        },
    }
    print_table(report)
    out = capsys.readouterr().out
    headings = ("1. poll path", "2. end to end", "3. scale of state", "4. routing decision", "5. large result")
    for heading in (*headings, "6. rewrite_uris per page"):
        assert heading in out
    assert "  32@2000/s |" in out
    assert "median of the rounds; gateway on core 1)" in out
    assert "at 2000 polls/s: p50 idle 0.50 ms, loaded 0.50 ms (x1.0)" in out
    assert "a gateway with none of them 1.00 -> 1.10 ms (x1.1), the backend itself 0.50 -> 0.60 ms (x1.2)" in out
    assert "(100 B/query; through a gateway that holds none: 90 B/query)" in out
    assert "18.00 us\n" in out and "17.00 us  (URIs left on the backend)" in out


def test_the_rewrite_bench_reorders_pages_and_tells_a_page_left_on_the_backend():
    page = b'{"id":"q","infoUri":"http://b/ui","nextUri":"http://b/n","data":[[1]],"stats":{"state":"RUNNING"}}'
    assert list(rewrite.orjson.loads(rewrite.reordered(page, "next_last"))) == [
        "id",
        "infoUri",
        "data",
        "stats",
        "nextUri",
    ]
    assert rewrite.reordered(page, "sorted").startswith(b'{"data":[[1]],"id":"q","infoUri"')
    assert "rootStage" in rewrite.orjson.loads(rewrite.with_stage_tree(page))["stats"]
    assert rewrite.on_gateway(page.replace(b"http://b", rewrite.GATEWAY.encode()))
    assert not rewrite.on_gateway(page)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two CPUs")
def test_pinned_puts_processes_on_their_cores_and_gives_all_back():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with pinned(set(), {child.pid}):
            assert os.sched_getaffinity(child.pid) == {1}
        assert os.sched_getaffinity(child.pid) == set(range(os.cpu_count() or 1))
    finally:
        child.kill()
        child.wait(10)


def test_the_estimates_benchmark_times_routing_on_a_cache_hit_and_submissions(loop_thread, make_sim):
    from bench.estimates import routing_on_cache_hit, submissions

    planner = make_sim(name="bench-planner")
    figures = loop_thread.run(routing_on_cache_hit(planner.url, iterations=20, rounds=1))
    assert figures["explains"] == 1  # warmed once; every timed decision was a cache hit
    assert figures["cost router (cache hit)"]["cpu_us"] > 0
    timed = submissions(loop_thread, 1)
    assert set(timed) >= {"no estimates", "planner hangs", "planner answers 500", "planner answers garbage"}
    assert timed["planner hangs"]["p50_ms"] >= timed["budget_ms"]


def test_the_cache_bench_reads_percentiles_by_nearest_rank_and_says_whether_the_ratio_is_met():
    from bench.cache import percentiles, verdict

    figures = percentiles([float(v) for v in range(100, 0, -1)])  # 1..100, in any order
    assert figures == {"p50": 50.5, "p90": 90.0, "p99": 99.0}
    assert percentiles([7.0]) == {"p50": 7.0, "p90": 7.0, "p99": 7.0}
    assert verdict(5.0) == "met" and verdict(4.99) == "not met"


def test_the_cache_bench_sends_distinct_statements_the_cache_may_answer():
    from bench.cache import SQL, distinct_sql
    from gateway.cache.statement import examine

    texts = [distinct_sql(i) for i in range(-2, 3)]
    normalised = {examine(text).normalised for text in texts}
    assert None not in normalised and len(normalised) == len(texts)
    assert examine(SQL).why_not is None


def test_the_cache_bench_tells_the_cpu_of_a_process_and_the_commit(tmp_path):
    from bench.cache import commit_of, cpu_seconds

    assert cpu_seconds(os.getpid()) > 0
    assert commit_of(tmp_path) == "unknown"  # not a git repository
    assert commit_of(Path(__file__).parent.parent) not in ("", "unknown")


def test_the_cache_bench_prints_both_sections(capsys):
    from bench.cache import print_report

    row = {"p50_ms": 5.0, "p90_ms": 6.0, "p99_ms": 7.0, "client_cpu_p50_ms": 2.0, "answered_from_cache": 3}
    http = {
        "requests_per_query": 2,
        "post_p50_ms": 1.0,
        "get_p50_ms": 1.0,
        "total_p50_ms": 2.0,
        "wall_per_query_ms": 2.1,
        "client_cpu_ms": 1.0,
        "gateway_cpu_ms": 0.5,
        "cluster_cpu_ms": 0.0,
    }

    def filled(rss: float) -> dict:
        sample = {"queries": 1000, "rss_mb": rss, "tier_entries": 1200, "tier_mb": 3.5}
        growth = {"rss_before_mb": 100.0, "rss_after_mb": rss, "rss_growth_mb": rss - 100}
        return growth | {"seconds": 10.0, "queries_per_second": 100.0, "samples": [sample]}

    turns = {
        "kinds": {"hit": row, "cluster": row | {"p50_ms": 30.0}},
        "ratio_cluster_hit_p50": 6.0,
        "ratio_cluster_hit_p90": 5.0,
        "ratio_cluster_hit_p99": 4.0,
        "wanted_ratio": 5.0,
        "verdict": "met",
    }
    report = {
        "commit": "abc1234",
        "date": "2026-12-07T00:00:00+00:00",
        "machine": {"cpus": 2},
        "hit_against_cluster": turns
        | {
            "runs": 3,
            "warmup": 1,
            "sql": "SELECT 1",
            "rows": 25,
            "kept_connection": turns | {"ratio_cluster_hit_p50": 4.0, "verdict": "not met"},
            "plain_http": {"hit": http, "cluster": http},
        },
        "memory_bound": {
            "memory_bytes": 16 * 1024 * 1024,
            "entry_overhead_bytes": 200,
            "queries": 1000,
            "warmup": 200,
            "threads": 8,
            "cache": filled(110.0),
            "control": filled(102.0),
            "entry_bytes_counted": 3000,
            "cache_share_mb": 8.0,
        },
        "seconds": 60.0,
        "load_average_before": [0.5, 0.4, 0.3],
        "load_average_after": [1.5, 0.9, 0.4],
    }
    print_report(report)
    out = capsys.readouterr().out
    assert "commit abc1234" in out and "1. one query of 25 rows" in out and "2. memory: 1,000 distinct" in out
    assert "cluster / hit: p50 x6.0, p90 x5.0, p99 x4.0; wanted >= 5x at p50: met" in out
    assert "one connection kept open" in out and "p50 x4.0, p90 x5.0, p99 x4.0; wanted >= 5x at p50: not met" in out
    assert "   1,000 |   110.0" in out and out.count("                       8.0\n") == 1
    assert "the 1,200 entries made would count 3.4 MiB unbounded" in out
    assert "took 60.0 s; load average (1, 5, 15 min) before [0.5, 0.4, 0.3], after [1.5, 0.9, 0.4]" in out


def test_the_scaling_bench_prints_medians_of_its_rounds_and_the_cost_of_a_start(capsys):
    from bench.scaling import medians, print_report

    def one(cold: float, warm: float) -> dict:
        return {
            "from zero": {"first_row_s": cold, "last_end_s": cold + 0.5},
            "ready": {"first_row_s": warm, "last_end_s": warm + 0.1},
        }

    rounds = [one(3.0, 0.2), one(2.0, 0.3), one(4.0, 0.1)]
    figures = medians(rounds)
    assert figures["from zero"] == {"first_row_s": 3.0, "last_end_s": 3.5}
    assert figures["ready"]["first_row_s"] == 0.2
    print_report({"queries": 20, "rounds": rounds, "commit": "abc1234", "interval": 0.5, "medians": figures})
    out = capsys.readouterr().out
    assert "medians of 3 rounds (commit abc1234" in out
    assert "from zero" in out and "3.50 s" in out and "cost of starting" in out and "2.80 s" in out
