"""``python -m bench.store_queries``: how many statements the PostgreSQL store executes per routed
query, for sizing the store of a fleet (docs/deployment.md).

One gateway (``--workers`` worker processes, as a pod of deploy/kubernetes/ runs) on a throwaway
PostgreSQL in front of one trinosim. PostgreSQL logs every statement it executes
(``log_statement = all``: simple-protocol statements and each execution of a prepared one, which is
how asyncpg sends them); the log lines of the gateway's connections are counted

- while the gateway is idle for ``--idle`` seconds (its background work: the backend list re-read,
  health-check leases, history housekeeping), and
- while ``--queries`` queries run to completion through the gateway, ``--concurrency`` at a time,
  plus a second for the history buffer to flush;

per routed query = (statements in the query window - idle rate x its length) / queries. Statements
are broken down by kind (BEGIN, SELECT, INSERT...) and by the table they name. For comparison, the
same windows' deltas of ``pg_stat_database`` (transactions) and ``pg_stat_user_tables`` (scans, rows
written) are printed too. Figures are printed and written to ``bench/results/store-queries-<time>.json``;
never asserted.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import re
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import trino
from prometheus_client.parser import text_string_to_metric_families

from bench.__main__ import machine, save_report
from tests.postgres import PostgresServer
from trinosim import TrinoSimProcess
from trinosim.gateway_process import GatewayProcess

SQL = "SELECT * FROM tpch.tiny.nation"
# The measurement's own psql sessions are told apart from the gateway's connections by this name.
PSQL = "psql"
_LOGGED = re.compile(r"^\S+ \S+ \S+ \[(?P<pid>\d+)\] (?P<app>[^|]*)\|LOG:  (?:statement|execute [^:]*): (?P<sql>.*)$")
_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \S+ \S+ \[\d+\] ")
_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE|JOIN)\s+\"?(\w+)", re.IGNORECASE)


def statements(log: Path, offset: int) -> tuple[list[tuple[int, str]], int]:
    """(connection's process id, statement) of each statement the gateway's connections executed, as
    logged after ``offset``; the new offset. A statement of several lines continues on lines without
    the log line's prefix."""
    with log.open("rb") as file:
        file.seek(offset)
        text = file.read()
    found: list[tuple[int, str]] = []
    ours = False
    for line in text.decode(errors="replace").splitlines():
        match = _LOGGED.match(line)
        if match is not None:
            ours = match["app"] != PSQL
            if ours:
                found.append((int(match["pid"]), match["sql"]))
        elif _PREFIX.match(line):
            ours = False  # another kind of log line (a checkpoint, a parameter reload)
        elif ours and found:
            found[-1] = (found[-1][0], found[-1][1] + " " + line.strip())
    return found, offset + len(text)


def pre_pings(found: list[tuple[int, str]]) -> int:
    """SQLAlchemy's pool_pre_ping on each connection checkout: BEGIN, an empty statement (which
    PostgreSQL does not log), ROLLBACK; seen in the log as a BEGIN directly followed on its connection
    by a ROLLBACK."""
    last: dict[int, str] = {}
    pings = 0
    for pid, sql in found:
        pings += sql.startswith("ROLLBACK") and last.get(pid, "").startswith("BEGIN")
        last[pid] = sql
    return pings


def breakdown(logged: list[tuple[int, str]]) -> dict[str, Counter[str]]:
    """Statements by kind (their first word), by the table they name, and by text."""
    found = [sql for _, sql in logged]
    return {
        "kinds": Counter(sql.split(None, 1)[0].rstrip(";").upper() if sql.strip() else "(empty)" for sql in found),
        "tables": Counter(table for sql in found for table in set(_TABLE.findall(sql))),
        "texts": Counter(re.sub(r"\s+", " ", sql)[:110] for sql in found),
    }


def per_query(busy: Counter[str], idle: Counter[str], idle_seconds: float, busy_seconds: float, queries: int) -> dict:
    """Each key's count in the query window less what the idle rate makes of its length, per query."""
    scale = busy_seconds / idle_seconds
    net = {key: (busy[key] - idle[key] * scale) / queries for key in busy.keys() | idle.keys()}
    return {key: round(value, 2) for key, value in sorted(net.items(), key=lambda item: -item[1])}


def proxied_requests(url: str) -> int:
    """Trino-protocol requests the gateway answered (every worker's, summed by /metrics)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as answer:
        families = list(text_string_to_metric_families(answer.read().decode()))
    samples = [s for f in families if f.name == "trino_gateway_requests" for s in f.samples]
    return int(sum(s.value for s in samples if s.name.endswith("_total")))


def run_queries(url: str, count: int, concurrency: int) -> None:
    host, port = url.removeprefix("http://").rsplit(":", 1)

    def one(_: int) -> None:
        with trino.dbapi.connect(host=host, port=int(port), user="bench", request_timeout=30) as connection:
            cursor = connection.cursor()
            cursor.execute(SQL)
            cursor.fetchall()

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(count)))


def log_every_statement(server: PostgresServer) -> None:
    server.sql("ALTER SYSTEM SET log_statement = 'all'", database="postgres")
    # %a: the application name, which psql sets and the gateway's connections leave empty.
    server.sql("ALTER SYSTEM SET log_line_prefix = '%m [%p] %a|'", database="postgres")
    server.sql("SELECT pg_reload_conf()", database="postgres")
    time.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=300, help="queries routed in the measured window")
    parser.add_argument("--concurrency", type=int, default=4, help="queries running at once")
    parser.add_argument("--workers", type=int, default=2, help="gateway worker processes")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of the idle window")
    args = parser.parse_args()

    server = PostgresServer().start()
    backend = TrinoSimProcess(name="store-bench").start()
    gateway = GatewayProcess(
        store=server.url("postgresql"),
        workers=args.workers,
        config={"backends": [{"name": "trino-1", "proxy_to": backend.url}]},
        extra_args=["--log-level", "WARNING"],
    )
    try:
        gateway.start()
        run_queries(gateway.url, 20, args.concurrency)  # warm: connections, prepared statements, caches
        time.sleep(2)
        log_every_statement(server)
        _, offset = statements(server.log_path, 0)

        started = time.monotonic()
        time.sleep(args.idle)
        idle_seconds = time.monotonic() - started
        idle, offset = statements(server.log_path, offset)

        requests_before = proxied_requests(gateway.url)
        started = time.monotonic()
        run_queries(gateway.url, args.queries, args.concurrency)
        time.sleep(1.0)  # the query history's buffer flushes every 50 ms; the last outcomes land
        busy_seconds = time.monotonic() - started
        busy, offset = statements(server.log_path, offset)
        requests = proxied_requests(gateway.url) - requests_before
    finally:
        gateway.stop()
        backend.stop()
        server.stop()

    idle_parts, busy_parts = breakdown(idle), breakdown(busy)
    scale = busy_seconds / idle_seconds

    def net(busy_count: int, idle_count: int) -> float:
        """Per routed query: the query window's count less the idle rate over its length."""
        return round((busy_count - idle_count * scale) / args.queries, 2)

    figures = {
        "statements_logged": net(len(busy), len(idle)),
        "transactions": net(busy_parts["kinds"]["BEGIN"], idle_parts["kinds"]["BEGIN"]),
        "pre_pings": net(pre_pings(busy), pre_pings(idle)),
    }
    # Each pre-ping also executes an empty statement, which the log leaves out.
    figures["statements_with_pings"] = round(figures["statements_logged"] + figures["pre_pings"], 2)
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": vars(args) | {"sql": SQL},
        "idle": {
            "seconds": round(idle_seconds, 2),
            "statements": len(idle),
            "pre_pings": pre_pings(idle),
            "per_second": round(len(idle) / idle_seconds, 2),
            **idle_parts,
        },
        "queries": {"seconds": round(busy_seconds, 2), "statements": len(busy), "proxied_requests": requests},
        "per_routed_query": figures
        | {
            f"by_{part}": per_query(busy_parts[part], idle_parts[part], idle_seconds, busy_seconds, args.queries)
            for part in ("kinds", "tables", "texts")
        },
        "proxied_requests_per_query": round(requests / args.queries, 2),
    }
    print(f"\nmachine: {report['machine']}")
    print(f"gateway: {args.workers} worker(s) on PostgreSQL; {args.queries} queries, {args.concurrency} at once: {SQL}")
    print(
        f"idle {idle_seconds:.1f} s: {len(idle)} statements ({report['idle']['per_second']}/s), "
        f"{pre_pings(idle)} of the BEGIN/ROLLBACK pairs pre-pings"
    )
    for text, count in idle_parts["texts"].most_common(8):
        print(f"  {count / idle_seconds:6.2f}/s  {text}")
    print(f"queries {busy_seconds:.1f} s: {len(busy)} statements, {requests} proxied requests")
    print(f"per routed query, the idle rate subtracted: {figures}")
    print(f"  by kind: {report['per_routed_query']['by_kinds']}")
    print(f"  by table: {report['per_routed_query']['by_tables']}")
    for text, count in list(report["per_routed_query"]["by_texts"].items())[:8]:
        print(f"  {count:6.2f}  {text}")
    print(f"proxied requests per query: {report['proxied_requests_per_query']}")
    save_report("store-queries", report)


if __name__ == "__main__":
    main()
