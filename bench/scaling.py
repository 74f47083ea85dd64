"""``python -m bench.scaling``: what a burst of queries costs when its routing group has scaled to zero.

One gateway (a child process on embedded SQLite, one worker) in front of one trinosim process that
the gateway's command scaler starts and stops (``start`` launches ``python -m trinosim`` in the
background, ``stop`` kills it: what ``systemctl start`` or ``kubectl scale`` would do, with a
cluster that boots in about a second). Its routing group scales to zero (``min_clusters: 0``), the
manager looks every ``--interval`` seconds and the health checks run as often, a single success
making the cluster READY.

Each round, on a fresh gateway and a stopped cluster:

1. from zero: ``--queries`` queries (``SELECT n, count(*) FROM tpch.tiny.nation``, one ``trino.dbapi``
   connection each) submitted at once; they wait in the gateway's queue until the cluster it starts
   is READY. Timed from the first submission: to the first row any of them got, and to the end of the
   last one.
2. warm: the same burst again, the cluster now READY.

Medians over ``--rounds`` are printed with the commit and written to
``bench/results/scaling-<time>.json``; never asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import trino

from bench.__main__ import machine, save_report
from bench.cache import commit_of
from tests.clusters.helpers import CommandCluster
from trinosim.gateway_process import GatewayProcess

GROUP = "etl"
SQL = "SELECT {n} AS n, count(*) FROM tpch.tiny.nation"


def config(cluster: CommandCluster, interval: float) -> dict[str, Any]:
    return {
        "backends": [cluster.record()],
        "routing": {
            "default_group": GROUP,
            "groups": {GROUP: {"scaling": {"min_clusters": 0, "idle_time": "10m", "start_timeout": "60s"}}},
        },
        "scaling": {"interval": interval},
        "health": {"interval": interval, "timeout": 2, "success_threshold": 1, "failure_threshold": 1},
    }


def state(gateway: GatewayProcess, name: str) -> str:
    status, backends = gateway.call("GET", "/gateway/backend/all")
    assert status == 200, backends
    return next(b["state"] for b in backends if b["name"] == name)


def wait_for_state(gateway: GatewayProcess, name: str, wanted: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while (now := state(gateway, name)) != wanted:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} is {now}, not {wanted}, after {timeout} s")
        time.sleep(0.05)


def burst(url: str, queries: int) -> dict[str, float]:
    """``queries`` queries submitted at once: seconds from the first submission to the first row any
    of them got, and to the end of the last."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    ready = threading.Barrier(queries)
    submitted: list[float] = []
    first_rows: list[float] = []
    ends: list[float] = []

    def one(n: int) -> None:
        conn = trino.dbapi.connect(host=host, port=int(port), user=f"bench-{n % 5}", request_timeout=120)
        try:
            cursor = conn.cursor()
            ready.wait()
            submitted.append(time.monotonic())
            cursor.execute(SQL.format(n=n))
            row = cursor.fetchone()
            first_rows.append(time.monotonic())
            rest = cursor.fetchall()
            ends.append(time.monotonic())
            if row is None or row[0] != n or row[1] != 25 or rest:
                raise RuntimeError(f"query {n} answered {row} {rest}")
        finally:
            conn.close()

    with ThreadPoolExecutor(queries) as pool:
        for done in [pool.submit(one, n) for n in range(queries)]:
            done.result()
    start = min(submitted)
    return {"first_row_s": min(first_rows) - start, "last_end_s": max(ends) - start}


def one_round(directory: Path, number: int, queries: int, interval: float) -> dict[str, dict[str, float]]:
    cluster = CommandCluster(directory, f"etl-{number}", GROUP)
    gateway = GatewayProcess(config=config(cluster, interval))
    try:
        gateway.start()
        wait_for_state(gateway, cluster.name, "STOPPED")
        cold = burst(gateway.url, queries)
        if cluster.start_count() != 1:
            raise RuntimeError(f"{cluster.start_count()} starts of {cluster.name}, not 1")
        wait_for_state(gateway, cluster.name, "READY")
        warm = burst(gateway.url, queries)
        return {"from zero": cold, "ready": warm}
    finally:
        gateway.stop()
        cluster.kill()


def medians(rounds: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    return {
        kind: {figure: statistics.median(r[kind][figure] for r in rounds) for figure in rounds[0][kind]}
        for kind in rounds[0]
    }


def print_report(report: dict[str, Any]) -> None:
    print(
        f"\nA burst of {report['queries']} queries, medians of {len(report['rounds'])} rounds "
        f"(commit {report['commit']}; scaling.interval and health interval {report['interval']:g} s)"
    )
    print(f"{'':<22}{'first row':>12}{'last query ends':>18}")
    for kind, figures in report["medians"].items():
        print(f"{kind:<22}{figures['first_row_s']:>10.2f} s{figures['last_end_s']:>16.2f} s")
    cold, warm = report["medians"]["from zero"], report["medians"]["ready"]
    print(f"{'cost of starting':<22}{cold['first_row_s'] - warm['first_row_s']:>10.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--queries", type=int, default=20, help="queries in a burst")
    parser.add_argument("--interval", type=float, default=0.5, help="scaling.interval and health.interval, s")
    args = parser.parse_args()
    rounds: list[dict[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as directory:
        for number in range(args.rounds):
            rounds.append(one_round(Path(directory), number, args.queries, args.interval))
            cold, warm = rounds[-1]["from zero"], rounds[-1]["ready"]
            print(
                f"round {number + 1}: from zero {cold['first_row_s']:.2f} s to the first row, "
                f"{cold['last_end_s']:.2f} s to the last end; ready {warm['first_row_s']:.2f} s, "
                f"{warm['last_end_s']:.2f} s",
                file=sys.stderr,
            )
    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "commit": commit_of(Path(__file__).parent.parent),
        "queries": args.queries,
        "interval": args.interval,
        "rounds": rounds,
        "medians": medians(rounds),
    }
    print_report(report)
    save_report("scaling", report)


if __name__ == "__main__":
    main()
