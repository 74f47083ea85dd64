"""``python -m bench.cache``: what the result cache gives a dashboard query, and what it holds in memory.

1. Hit against cluster: the end-to-end time of one query returning 25 rows (``SELECT * FROM
   tpch.tiny.nation``) with the Python ``trino`` client, one ``trino.dbapi`` connection per run (what a
   BI tool opens for each tile it refreshes), through one gateway (a child process on embedded SQLite,
   one worker, in front of a trinosim process): answered from the cache (routing group ``bi``, which
   caches, its entry warm) and run on the cluster (routing group ``adhoc``, which does not cache; and,
   beside it, group ``bi`` with the client tag ``no-cache``: the query runs and its result is captured
   again). The kinds take turns in the same rounds; median, p90 and p99 of each, and the ratio
   cluster / hit against the 5x the cache is meant to give. Then where the time goes: the same queries
   with plain HTTP (one connection per run), each request timed, and the CPU the client, the gateway and
   the cluster spent per query.
2. Memory bound: a gateway whose cache keeps entries in memory only (``cache: {memory_bytes: X,
   disk_bytes: 0, shared_entry_bytes: 0}``, one worker) is sent 10,000 distinct cacheable queries (plain
   HTTP, 8 at a time); its RSS every 1,000, against the bound and the memory tier's own count of entries
   and bytes. The same 10,000 through a gateway that does not cache (the control: a gateway's memory
   grows with its history buffers and its book of ended queries too): the difference is the cache's.

Figures are printed (with the commit they were made at) and written to ``bench/results/cache-<time>.json``;
never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import math
import os
import shutil
import statistics
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
import trino

from bench.__main__ import machine, save_report
from bench.scenarios import rss_bytes, with_children
from gateway.cache.memory import ENTRY_OVERHEAD
from trinosim import TrinoSimProcess
from trinosim.gateway_process import GatewayProcess

SQL = "SELECT * FROM tpch.tiny.nation"
ROWS = 25
WANTED_RATIO = 5.0
MIB = 1024 * 1024
# Statements sent to each gateway of section 2 before its RSS is first read (not among the queries).
WARMUP = 200
# The three ways the same query goes: routing group, client tags.
KINDS: dict[str, tuple[str, list[str]]] = {
    "hit": ("bi", []),
    "cluster": ("adhoc", []),
    "no-cache tag": ("bi", ["no-cache"]),
}


# -- pure helpers (tests/test_bench_tools.py) ------------------------------------------------------------
def percentiles(values: list[float]) -> dict[str, float]:
    """Median, p90 and p99 (nearest rank) of ``values``."""
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    return {"p50": statistics.median(ordered), "p90": rank(90), "p99": rank(99)}


def verdict(ratio: float, wanted: float = WANTED_RATIO) -> str:
    return "met" if ratio >= wanted else "not met"


def commit_of(directory: Path) -> str:
    """The commit the bench runs at (short id), and whether the tree had changes besides the results."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=directory, capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results"],
            cwd=directory,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} (with uncommitted changes)" if changed else head


def cpu_seconds(pid: int) -> float:
    """User and system CPU of ``pid`` and its children (a server's workers), from /proc."""
    total = 0
    for one in with_children(pid):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


# -- 1. hit against cluster -------------------------------------------------------------------------------
def _connect(url: str, group: str, tags: list[str]) -> trino.dbapi.Connection:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return trino.dbapi.connect(
        host=host,
        port=int(port),
        user="bench",
        client_tags=tags or None,
        http_headers={"X-Trino-Routing-Group": group},
        request_timeout=30,
    )


def _client_run(
    url: str, group: str, tags: list[str], kept: trino.dbapi.Connection | None = None
) -> tuple[float, float, bool]:
    """One run as a dashboard tile: the query and every row, on a new connection (or on ``kept``, one a
    BI tool's pool keeps open between refreshes). Wall ms, the client's CPU ms (this thread's), whether
    the client's statistics say the answer came from the cache."""
    started, started_cpu = time.perf_counter(), time.thread_time()
    connection = kept or _connect(url, group, tags)
    try:
        cursor = connection.cursor()
        cursor.execute(SQL)
        rows = cursor.fetchall()
    finally:
        if kept is None:
            connection.close()
    wall, cpu = (time.perf_counter() - started) * 1000, (time.thread_time() - started_cpu) * 1000
    if len(rows) != ROWS:
        raise RuntimeError(f"{group} {tags}: {len(rows)} rows, not {ROWS}")
    return wall, cpu, cursor.stats.get("resultCache") == "HIT"


def _http_run(url: str, group: str, tags: list[str]) -> list[float]:
    """The same query with plain HTTP on a new connection: the ms of each request, the POST first."""
    headers = {"X-Trino-User": "bench", "X-Trino-Routing-Group": group}
    if tags:
        headers["X-Trino-Client-Tags"] = ",".join(tags)
    times, rows = [], 0
    with requests.Session() as session:
        started = time.perf_counter()
        page = session.post(f"{url}/v1/statement", data=SQL.encode(), headers=headers, timeout=30)
        times.append((time.perf_counter() - started) * 1000)
        page.raise_for_status()
        document = page.json()
        while "nextUri" in document:
            started = time.perf_counter()
            page = session.get(document["nextUri"], headers={"X-Trino-User": "bench"}, timeout=30)
            times.append((time.perf_counter() - started) * 1000)
            page.raise_for_status()
            document = page.json()
            rows += len(document.get("data") or [])
    if rows != ROWS or document["stats"]["state"] != "FINISHED":
        raise RuntimeError(f"{group} {tags}: {rows} rows, {document['stats']['state']}")
    return times


def hit_against_cluster(gateway: GatewayProcess, cluster: TrinoSimProcess, runs: int, warmup: int) -> dict[str, Any]:
    out = _taking_turns(gateway, runs, warmup, keep=False)
    out["kept_connection"] = _taking_turns(gateway, runs, warmup, keep=True)
    out["plain_http"] = _where_the_time_goes(gateway, cluster, runs)
    return out


def _taking_turns(gateway: GatewayProcess, runs: int, warmup: int, keep: bool) -> dict[str, Any]:
    """Every kind once a round, ``runs`` rounds: on a new connection per run, or (``keep``) on one
    connection per kind kept open throughout."""
    kept = {kind: _connect(gateway.url, *KINDS[kind]) for kind in KINDS} if keep else {}
    for _ in range(warmup):
        for kind, (group, tags) in KINDS.items():
            _client_run(gateway.url, group, tags, kept.get(kind))
    wall: dict[str, list[float]] = {kind: [] for kind in KINDS}
    cpu: dict[str, list[float]] = {kind: [] for kind in KINDS}
    hits: dict[str, int] = dict.fromkeys(KINDS, 0)
    order = list(KINDS)
    for round_number in range(runs):
        # Each round every kind once, the order turned every round: a noisy moment lands on each.
        shift = round_number % len(order)
        for kind in order[shift:] + order[:shift]:
            took, client_cpu, hit = _client_run(gateway.url, *KINDS[kind], kept.get(kind))
            wall[kind].append(took)
            cpu[kind].append(client_cpu)
            hits[kind] += hit
    out: dict[str, Any] = {"runs": runs, "warmup": warmup, "sql": SQL, "rows": ROWS, "kinds": {}}
    for kind in KINDS:
        out["kinds"][kind] = {
            **{f"{name}_ms": round(value, 2) for name, value in percentiles(wall[kind]).items()},
            "client_cpu_p50_ms": round(statistics.median(cpu[kind]), 2),
            "answered_from_cache": hits[kind],
        }
    kinds = out["kinds"]
    for name in ("p50", "p90", "p99"):
        out[f"ratio_cluster_hit_{name}"] = round(kinds["cluster"][f"{name}_ms"] / kinds["hit"][f"{name}_ms"], 2)
    out["wanted_ratio"] = WANTED_RATIO
    out["verdict"] = verdict(out["ratio_cluster_hit_p50"])
    for connection in kept.values():
        connection.close()
    return out


def _where_the_time_goes(gateway: GatewayProcess, cluster: TrinoSimProcess, runs: int) -> dict[str, Any]:
    """Each kind in a block of ``runs`` plain-HTTP runs: each request's time, and the CPU the gateway and
    the cluster spent (a block: the CPU of a process cannot be told apart between interleaved kinds)."""
    assert gateway.process is not None and cluster.process is not None
    out: dict[str, Any] = {}
    for kind, (group, tags) in KINDS.items():
        requests_ms: list[list[float]] = []
        gateway_cpu, cluster_cpu, client_cpu = cpu_seconds(gateway.process.pid), cpu_seconds(cluster.process.pid), 0.0
        started = time.perf_counter()
        for _ in range(runs):
            started_cpu = time.thread_time()
            requests_ms.append(_http_run(gateway.url, group, tags))
            client_cpu += time.thread_time() - started_cpu
        elapsed = time.perf_counter() - started
        counts = [len(times) for times in requests_ms]
        out[kind] = {
            "requests_per_query": statistics.median(counts),
            "requests_per_query_max": max(counts),
            "post_p50_ms": round(statistics.median(times[0] for times in requests_ms), 2),
            "get_p50_ms": round(statistics.median(t for times in requests_ms for t in times[1:]), 2),
            "total_p50_ms": round(statistics.median(sum(times) for times in requests_ms), 2),
            "wall_per_query_ms": round(elapsed / runs * 1000, 2),
            "client_cpu_ms": round(client_cpu / runs * 1000, 2),
            "gateway_cpu_ms": round((cpu_seconds(gateway.process.pid) - gateway_cpu) / runs * 1000, 2),
            "cluster_cpu_ms": round((cpu_seconds(cluster.process.pid) - cluster_cpu) / runs * 1000, 2),
        }
    return out


# -- 2. memory bound --------------------------------------------------------------------------------------
def distinct_sql(i: int) -> str:
    """The ``i``-th of the memory section's statements: each a text of its own, each cacheable."""
    return f"SELECT n.*, {i} AS k FROM tpch.tiny.nation n"


def _send(url: str, numbers: range, threads: int) -> None:
    """Each statement once with plain HTTP, ``threads`` at a time (a session each), followed to its end."""
    local = threading.local()

    def one(i: int) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        document = session.post(
            f"{url}/v1/statement", data=distinct_sql(i).encode(), headers={"X-Trino-User": "bench"}, timeout=60
        ).json()
        rows = 0
        while "nextUri" in document:
            document = session.get(document["nextUri"], headers={"X-Trino-User": "bench"}, timeout=60).json()
            rows += len(document.get("data") or [])
        if rows != ROWS:
            raise RuntimeError(f"query {i}: {rows} rows, {document.get('error') or document['stats']['state']}")

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, numbers))


def _memory_tier(gateway: GatewayProcess) -> dict[str, int] | None:
    status, body = gateway.call("GET", "/gateway/cache")
    if status != 200:
        return None
    return body["tiers"].get("memory")


def fill(gateway: GatewayProcess, queries: int, every: int, threads: int, warmup: int) -> dict[str, Any]:
    """``warmup`` statements (not counted), then ``queries`` distinct ones, RSS sampled every ``every``."""
    assert gateway.process is not None
    pid = gateway.process.pid
    _send(gateway.url, range(-warmup, 0), threads)
    time.sleep(1.0)  # the history's writes of the warm-up settle
    before = rss_bytes(pid)
    samples = []
    started = time.perf_counter()
    for start in range(0, queries, every):
        _send(gateway.url, range(start, min(queries, start + every)), threads)
        tier = _memory_tier(gateway)
        samples.append(
            {
                "queries": min(queries, start + every),
                "rss_mb": round(rss_bytes(pid) / MIB, 1),
                "tier_entries": tier["entries"] if tier else None,
                "tier_mb": round(tier["size"] / MIB, 2) if tier else None,
            }
        )
    elapsed = time.perf_counter() - started
    return {
        "rss_before_mb": round(before / MIB, 1),
        "rss_after_mb": samples[-1]["rss_mb"],
        "rss_growth_mb": round(samples[-1]["rss_mb"] - before / MIB, 1),
        "seconds": round(elapsed, 1),
        "queries_per_second": round(queries / elapsed, 1),
        "samples": samples,
    }


def memory_bound(cluster_url: str, bound: int, queries: int, every: int, threads: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "memory_bytes": bound,
        "entry_overhead_bytes": ENTRY_OVERHEAD,
        "queries": queries,
        "warmup": WARMUP,
        "threads": threads,
    }
    for name, group in (("cache", {"bi": {"cache": {"ttl": "1h"}}}), ("control", {})):
        config = {
            "backends": [{"name": "cluster", "proxy_to": cluster_url, "routing_group": "bi"}],
            "routing": {"default_group": "bi", "groups": group},
            "cache": {"memory_bytes": bound, "disk_bytes": 0, "shared_entry_bytes": 0},
        }
        gateway = GatewayProcess(config=config, workers=1, extra_args=["--log-level", "WARNING"])
        try:
            gateway.start()
            out[name] = fill(gateway, queries, every, threads, WARMUP)
        finally:
            gateway.stop()
            shutil.rmtree(gateway.dir, ignore_errors=True)
    last = out["cache"]["samples"][-1]
    if last["tier_entries"]:
        out["entry_bytes_counted"] = round(last["tier_mb"] * MIB / last["tier_entries"])
    out["cache_share_mb"] = round(out["cache"]["rss_growth_mb"] - out["control"]["rss_growth_mb"], 1)
    return out


# -- the run ----------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200, help="measured runs of each kind (section 1)")
    parser.add_argument("--warmup", type=int, default=20, help="runs of each kind before the measured ones")
    parser.add_argument("--queries", type=int, default=10_000, help="distinct queries (section 2)")
    parser.add_argument("--every", type=int, default=1000, help="queries between RSS samples")
    parser.add_argument("--threads", type=int, default=8, help="queries sent at a time (section 2)")
    # 16 MiB: the 10,000 entries (~3.2 KB each as the tier counts them, ~31 MiB) fill it about halfway
    # through, so that the samples show the tier growing, then evicting at its bound.
    parser.add_argument("--memory-mib", type=int, default=16, help="cache.memory_bytes of section 2, MiB")
    parser.add_argument("--only", default="hit,memory")
    args = parser.parse_args()
    only = set(args.only.split(","))
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": commit_of(Path(__file__).parent.parent),
        "machine": machine(),
        # Other work on the machine shows here: the figures of a loaded machine are slower, the times most.
        "load_average_before": [round(load, 2) for load in os.getloadavg()],
    }
    started = time.perf_counter()
    cluster = TrinoSimProcess(name="bench-cache-cluster", max_running=100000).start()
    try:
        if "hit" in only:
            config = {
                "backends": [
                    {"name": "cluster-bi", "proxy_to": cluster.url, "routing_group": "bi"},
                    {"name": "cluster-adhoc", "proxy_to": cluster.url, "routing_group": "adhoc"},
                ],
                "routing": {"default_group": "adhoc", "groups": {"bi": {"cache": {"ttl": "1h"}}}},
            }
            gateway = GatewayProcess(config=config, workers=1, extra_args=["--log-level", "WARNING"])
            # Spilled entries (none are expected: one entry) under the gateway's own folder, not /tmp's.
            config["cache"] = {"directory": str(gateway.dir / "cache")}  # (read at start)
            try:
                gateway.start()
                report["hit_against_cluster"] = hit_against_cluster(gateway, cluster, args.runs, args.warmup)
            finally:
                gateway.stop()
                shutil.rmtree(gateway.dir, ignore_errors=True)
        if "memory" in only:
            report["memory_bound"] = memory_bound(
                cluster.url, args.memory_mib * MIB, args.queries, args.every, args.threads
            )
    finally:
        cluster.stop()
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["load_average_after"] = [round(load, 2) for load in os.getloadavg()]
    print_report(report)
    save_report("cache", report)


def _print_turns(title: str, turns: dict[str, Any]) -> None:
    print(f"   {title}")
    print(
        f"   {'':<14} {'p50':>7} {'p90':>7} {'p99':>7}  {'client CPU p50':>14}  {'from cache':>10}"
        "   (hit: group bi, warm; cluster: group adhoc, no cache; no-cache tag: group bi, runs and is captured)"
    )
    for kind, row in turns["kinds"].items():
        print(
            f"   {kind:<14} {row['p50_ms']:>7.2f} {row['p90_ms']:>7.2f} {row['p99_ms']:>7.2f}  "
            f"{row['client_cpu_p50_ms']:>14.2f}  {row['answered_from_cache']:>10}"
        )
    print(
        f"   cluster / hit: p50 x{turns['ratio_cluster_hit_p50']}, p90 x{turns['ratio_cluster_hit_p90']}, "
        f"p99 x{turns['ratio_cluster_hit_p99']}; wanted >= {turns['wanted_ratio']:g}x at p50: {turns['verdict']}"
    )


def print_report(report: dict[str, Any]) -> None:
    print(f"\ncommit {report['commit']}, {report['date']}; machine: {report['machine']}")
    hit = report.get("hit_against_cluster")
    if hit:
        print(
            f"\n1. one query of {hit['rows']} rows ({hit['sql']}) with the Python trino client through one gateway "
            f"(1 worker, SQLite) in front of trinosim: {hit['runs']} runs of each kind after {hit['warmup']}, "
            "taking turns, ms"
        )
        for title, turns in (
            ("a new connection per run (a tile that connects each time)", hit),
            ("one connection kept open per kind (a BI tool's pool)", hit["kept_connection"]),
        ):
            _print_turns(title, turns)
        print(
            "   where the time goes: the same query with plain HTTP, one connection per run, each kind in a "
            "block of its own (per query; CPU from /proc)"
        )
        print(
            f"   {'':<14} {'requests':>8} {'POST p50':>9} {'GET p50':>8} {'total p50':>10} {'wall':>7} "
            f"{'client CPU':>10} {'gateway CPU':>11} {'cluster CPU':>11}"
        )
        for kind, row in hit["plain_http"].items():
            print(
                f"   {kind:<14} {row['requests_per_query']:>8g} {row['post_p50_ms']:>9.2f} {row['get_p50_ms']:>8.2f} "
                f"{row['total_p50_ms']:>10.2f} {row['wall_per_query_ms']:>7.2f} {row['client_cpu_ms']:>10.2f} "
                f"{row['gateway_cpu_ms']:>11.2f} {row['cluster_cpu_ms']:>11.2f}"
            )
    memory = report.get("memory_bound")
    if memory:
        print(
            f"\n2. memory: {memory['queries']:,} distinct cacheable queries (plain HTTP, {memory['threads']} at a "
            f"time) through a gateway with cache.memory_bytes {memory['memory_bytes'] / MIB:g} MiB (disk and "
            f"store tiers off, 1 worker), and through one that does not cache (control)"
        )
        cache, control = memory["cache"], memory["control"]
        print(
            f"   {'queries':>8} | {'RSS MB':>7} {'tier entries':>12} {'tier MB':>8} | {'control RSS MB':>14} | "
            f"{'growth, cache - control MB':>26}"
        )
        for with_cache, without in zip(cache["samples"], control["samples"], strict=True):
            share = (with_cache["rss_mb"] - cache["rss_before_mb"]) - (without["rss_mb"] - control["rss_before_mb"])
            print(
                f"   {with_cache['queries']:>8,} | {with_cache['rss_mb']:>7.1f} {with_cache['tier_entries']!s:>12} "
                f"{with_cache['tier_mb']!s:>8} | {without['rss_mb']:>14.1f} | {share:>26.1f}"
            )
        print(
            f"   RSS growth: cache {cache['rss_before_mb']} -> {cache['rss_after_mb']} MB (+{cache['rss_growth_mb']}), "
            f"control {control['rss_before_mb']} -> {control['rss_after_mb']} MB (+{control['rss_growth_mb']}); "
            f"the cache's share +{memory['cache_share_mb']} MB against the bound {memory['memory_bytes'] / MIB:g} MiB"
        )
        counted = memory.get("entry_bytes_counted")
        offered = (memory["queries"] + memory["warmup"]) * (counted or 0) / MIB
        print(
            f"   the tier counts {counted} B per entry (the blob and {memory['entry_overhead_bytes']} B of stated "
            f"overhead): the {memory['queries'] + memory['warmup']:,} entries made would count {offered:.1f} MiB "
            f"unbounded; sending took {cache['seconds']} s ({cache['queries_per_second']} queries/s) with the "
            f"cache, {control['seconds']} s ({control['queries_per_second']} queries/s) without"
        )
    if "seconds" in report:
        print(f"\nthe whole bench took {report['seconds']} s", end="")
        if "load_average_before" in report:
            print(
                f"; load average (1, 5, 15 min) before {report['load_average_before']}, "
                f"after {report.get('load_average_after')}",
                end="",
            )
        print()


if __name__ == "__main__":
    main()
