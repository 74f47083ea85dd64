"""``python -m bench.tracing_overhead``: what tracing costs on the poll path, and what an unreachable
collector costs (the goal: nothing beyond noise).

Four gateways in front of one trinosim, measured round-robin with wrk like ``make bench``'s poll
path (each cell the median of ``--repeat`` runs): tracing off (no endpoint), tracing on (an OTLP
receiver in this process takes the spans), tracing on with 10 % of new traces sampled, and tracing
on (every trace sampled) with the endpoint down (nothing listens there). Figures are printed and
written to ``bench/results/tracing-<time>.json``; never asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from bench import scenarios
from bench.__main__ import machine, save_report
from trinosim import TrinoSimProcess
from trinosim.gateway_process import GatewayProcess, free_port
from trinosim.otlp_receiver import OtlpReceiver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="wrk duration per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell (the median is shown)")
    parser.add_argument("--connections", default="1,32", help="wrk connection counts, comma-separated")
    parser.add_argument("--queries", type=int, default=32, help="queries left running whose polls are replayed")
    args = parser.parse_args()
    connections = [int(c) for c in args.connections.split(",")]

    backend = TrinoSimProcess(name="bench-backend", max_running=100000, client_timeout="1h").start()
    receiver = OtlpReceiver().start()
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    backends = [{"name": "b1", "proxy_to": backend.url}]
    gateways = {
        "tracing off": GatewayProcess(config={"backends": backends}, extra_args=["--log-level", "WARNING"]),
        "tracing on": GatewayProcess(
            config={"backends": backends, "observability": {"tracing": {"endpoint": receiver.url}}},
            extra_args=["--log-level", "WARNING"],
        ),
        "on, 10% sampled": GatewayProcess(
            config={
                "backends": backends,
                "observability": {"tracing": {"endpoint": receiver.url, "sampling_ratio": 0.1}},
            },
            extra_args=["--log-level", "WARNING"],
        ),
        "endpoint down": GatewayProcess(
            config={"backends": backends, "observability": {"tracing": {"endpoint": down}}},
            extra_args=["--log-level", "WARNING"],
        ),
    }
    try:
        for gateway in gateways.values():
            gateway.start()
        results = scenarios.poll_path(
            {name: g.url for name, g in gateways.items()}, connections, args.seconds, args.queries, args.repeat
        )
    finally:
        for gateway in gateways.values():
            gateway.stop()
        receiver.stop()
        backend.stop()
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "spans_received": len(receiver.spans),
        "poll_path": results,
    }
    print(f"\nmachine: {report['machine']}")
    print("poll path through the gateway (wrk GETs of running queries' nextUri; median of the runs)")
    print(f"{'conns':>6} | {'':<16} {'rps':>8} {'p50 ms':>8} {'p99 ms':>8} {'rps range':>15}")
    for count in connections:
        for name in gateways:
            cell = results[name][count]
            spread = f"{cell['rps_min']:.0f}-{cell['rps_max']:.0f}"
            print(
                f"{count:>6} | {name:<16} {cell['requests_per_second']:>8.0f} {cell['p50_ms']:>8.2f} "
                f"{cell['p99_ms']:>8.2f} {spread:>15}"
            )
    print(f"spans the receiver took: {report['spans_received']}")
    save_report("tracing", report)


if __name__ == "__main__":
    main()
