"""``python -m bench.fleet``: what a fleet costs on the poll path, side by side in one run.

Three targets on the same PostgreSQL store in front of one trinosim: one gateway node (two workers)
reached directly, the same node behind haproxy, and three nodes (two workers each) behind haproxy.
The poll path is measured as ``make bench`` measures it (wrk replaying running queries' nextUri
polls, the median of ``--repeat`` runs per cell): behind haproxy the polls of one query spread over
the nodes, so most polls reach a node that did not route the query. The added median latency of
the fleet is the third row against the second (haproxy's own cost is the second against the first).

Then the store's work per routed query: PostgreSQL's committed transactions (``pg_stat_database``)
while queries run through each target, less the same time's background work (health leases, the
change listener), divided by the queries. Figures are printed and written to
``bench/results/fleet-<time>.json``; never asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from typing import Any

from bench import scenarios
from bench.__main__ import machine, save_report
from chaos.load_balancer import Haproxy
from tests.conftest import run_query
from tests.postgres import PostgresServer
from trinosim import TrinoSimProcess
from trinosim.gateway_process import GatewayProcess


def committed(postgres: PostgresServer) -> int:
    return int(
        postgres.sql("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()")
    )


def store_transactions_per_query(postgres: PostgresServer, url: str, queries: int) -> float:
    """Store transactions per routed query through ``url``, background work taken out."""
    started, before = time.monotonic(), committed(postgres)
    for i in range(queries):
        run_query(url, f"SELECT {i}")
    elapsed, during = time.monotonic() - started, committed(postgres) - before
    time.sleep(0.5)  # the history flush of the last query
    idle_before = committed(postgres)
    time.sleep(elapsed)
    background = committed(postgres) - idle_before
    return max(0.0, during - background) / queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="wrk duration per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell (the median is shown)")
    parser.add_argument("--connections", default="1,32", help="wrk connection counts, comma-separated")
    parser.add_argument("--queries", type=int, default=32, help="queries left running whose polls are replayed")
    parser.add_argument("--routed", type=int, default=100, help="queries run to count the store's work")
    args = parser.parse_args()
    connections = [int(c) for c in args.connections.split(",")]

    backend = TrinoSimProcess(name="bench-backend", max_running=100000, client_timeout="1h").start()
    postgres = PostgresServer().start()
    nodes: list[GatewayProcess] = []
    balancers: list[Haproxy] = []
    try:
        store = postgres.url()
        config = {"backends": [{"name": "b1", "proxy_to": backend.url}]}
        nodes = [
            GatewayProcess(store=store, config=config, workers=2, extra_args=["--log-level", "WARNING"])
            for _ in range(3)
        ]
        for node in nodes:
            node.start()
        one = Haproxy({"node-0": nodes[0].port}).start()
        three = Haproxy({f"node-{i}": node.port for i, node in enumerate(nodes)}).start()
        balancers = [one, three]
        targets = {"1 node": nodes[0].url, "1 node, haproxy": one.url, "3 nodes, haproxy": three.url}
        results = scenarios.poll_path(targets, connections, args.seconds, args.queries, args.repeat)
        store_work = {name: store_transactions_per_query(postgres, url, args.routed) for name, url in targets.items()}
    finally:
        for balancer in balancers:
            balancer.stop()
        for node in nodes:
            node.stop()
        postgres.stop()
        backend.stop()
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "poll_path": results,
        "store_transactions_per_routed_query": store_work,
    }
    print(f"\nmachine: {report['machine']}")
    print("poll path (wrk GETs of running queries' nextUri; median of the runs), PostgreSQL store")
    print(f"{'conns':>6} | {'':<18} {'rps':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for count in connections:
        for name in targets:
            cell = results[name][count]
            print(
                f"{count:>6} | {name:<18} {cell['requests_per_second']:>8.0f} {cell['p50_ms']:>8.2f} "
                f"{cell['p99_ms']:>8.2f}"
            )
    print("store transactions per routed query (submission, polls, history), background taken out:")
    for name, value in store_work.items():
        print(f"  {name:<18} {value:.2f}")
    save_report("fleet", report)


if __name__ == "__main__":
    main()
