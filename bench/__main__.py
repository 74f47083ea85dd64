"""``make bench``: direct vs nginx vs the gateway, on this machine, in one run.

Prints one table and writes it as JSON under ``bench/results/``. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
from pathlib import Path
from typing import Any

from bench import rewrite, scenarios
from bench.nginx import NginxProcess
from trinosim import TrinoSimProcess
from trinosim.gateway_process import GatewayProcess

RESULTS = Path(__file__).parent / "results"


def save_report(name: str, report: dict[str, Any]) -> Path:
    """Write ``report`` to ``bench/results/<name>-<UTC time>.json`` and say where."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {path}")
    return path


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        names = [line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")]
        cpu = names[0].split(":", 1)[1].strip() if names else cpu
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "kernel": platform.release()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="wrk duration per measurement")
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    parser.add_argument("--gateway-workers", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="wrk runs per poll-path cell (the median is shown)")
    parser.add_argument("--only", default="poll,e2e,state,routing,large,rewrite")
    args = parser.parse_args()
    only = set(args.only.split(","))
    connections = [1, 32, 256]
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "gateway_workers": args.gateway_workers,
        "nginx_workers": 1,
    }
    backend = TrinoSimProcess(name="bench-backend", max_running=100000, client_timeout="1h").start()
    # Spooling, with pages of 200,000 rows: segments of ~25 MB, each of which a gateway that held
    # segments whole would show in its memory.
    spooling = TrinoSimProcess(name="bench-spooling", spooling=True, page_rows=200_000).start()
    gateway: GatewayProcess | None = None
    nginx: NginxProcess | None = None
    try:
        gateway = GatewayProcess(
            config={
                "backends": [
                    {"name": "b1", "proxy_to": backend.url},
                    {"name": "spooling", "proxy_to": spooling.url, "routing_group": "spooled"},
                ]
            },
            workers=args.gateway_workers,
            extra_args=["--log-level", "WARNING"],
        ).start()
        nginx = NginxProcess(backend.url).start()
        if "rewrite" in only:
            report["rewrite_uris_us"] = rewrite.rewrite_cost(backend.url)
        if "routing" in only:
            report["routing_decision_us"] = scenarios.routing_decision([1, 10, 100], [0, 100, 1000])
        if "poll" in only:
            targets = {"direct": backend.url, "nginx": nginx.url, "gateway": gateway.url}
            report["poll_path"] = scenarios.poll_path(
                targets, connections, args.seconds, 16 if args.quick else 64, 1 if args.quick else args.repeat
            )
        if "e2e" in only:
            small, large = (40, 6) if args.quick else (200, 30)
            report["end_to_end"] = scenarios.end_to_end(backend.url, gateway.url, small, large, concurrency=8)
            if (os.cpu_count() or 1) >= 2:
                # The gateway on a core of its own, as on its own host: what it adds to a query is
                # then its latency, not the CPU it takes from the client and the backend.
                with scenarios.pinned({os.getpid(), backend.process.pid}, {gateway.process.pid}):
                    report["end_to_end_gateway_own_core"] = scenarios.end_to_end(
                        backend.url, gateway.url, small, large, concurrency=8
                    )
        if "large" in only:
            report["large_result"] = scenarios.large_result(gateway.url, gateway.process.pid)
            report["spooled_large_result"] = scenarios.spooled_large_result(gateway.url, gateway.process.pid, "spooled")
        if "state" in only:
            report["scale_of_state"] = _scale_of_state(args, gateway, backend)
    finally:
        # Whatever started is stopped, also when a later start failed (e.g. nginx not installed).
        if nginx is not None:
            nginx.stop()
        if gateway is not None:
            gateway.stop()
        spooling.stop()
        backend.stop()
    print_table(report)
    print()
    save_report("bench", report)
    if only >= {"poll", "e2e", "state", "routing", "large", "rewrite"}:
        # latest.json is the last complete run; partial runs (--only) keep their dated file only.
        (RESULTS / "latest.json").write_text(json.dumps(report, indent=2))


def print_table(report: dict[str, Any]) -> None:
    print(f"\nmachine: {report['machine']}; gateway workers: {report['gateway_workers']}, nginx workers: 1")
    poll = report.get("poll_path")
    if poll:
        print("\n1. poll path (wrk, GET of in-flight queries' nextUri; median of the runs, rps range in JSON)")
        print(
            f"{'conns':>11} | {'direct rps':>10} {'p50':>7} {'p99':>7} | {'nginx rps':>10} {'p50':>7} {'p99':>7} | "
            f"{'gateway rps':>11} {'p50':>7} {'p99':>7} | {'gw/nginx':>8} {'gw/direct':>9} {'+p50 ms':>8}"
        )
        for conns in poll["direct"]:
            d, n, g = poll["direct"][conns], poll["nginx"][conns], poll["gateway"][conns]
            print(
                f"{conns:>11} | {d['requests_per_second']:>10.0f} {d['p50_ms']:>7.2f} {d['p99_ms']:>7.2f} | "
                f"{n['requests_per_second']:>10.0f} {n['p50_ms']:>7.2f} {n['p99_ms']:>7.2f} | "
                f"{g['requests_per_second']:>11.0f} {g['p50_ms']:>7.2f} {g['p99_ms']:>7.2f} | "
                f"{g['requests_per_second'] / n['requests_per_second']:>8.2f} "
                f"{g['requests_per_second'] / d['requests_per_second']:>9.2f} {g['p50_ms'] - d['p50_ms']:>8.2f}"
            )
    for key, title in (("end_to_end", "all on the 2 cores"), ("end_to_end_gateway_own_core", "gateway on core 1")):
        e2e = report.get(key)
        if not e2e:
            continue
        print(f"\n2. end to end (trino Python client, 8 at a time; median of the rounds; {title})")
        for label, row in e2e.items():
            print(
                f"  {label:<10} {row['queries']:>4} queries: direct {row['direct']['seconds']:.2f}s "
                f"({row['direct']['queries_per_second']}/s), gateway {row['gateway']['seconds']:.2f}s "
                f"({row['gateway']['queries_per_second']}/s), ratio {row['ratio_gateway_direct']}"
            )
    state = report.get("scale_of_state")
    if state:
        idle, loaded = state["idle_poll"], state["loaded_poll"]
        print(
            f"\n3. scale of state: {state['queries_in_flight']} queries in flight (held): "
            f"RSS +{state['rss_added_mb']} MB "
            f"({state['bytes_per_query']} B/query; through a gateway that holds none: "
            f"{state['control_bytes_per_query']} B/query); poll p50 idle {idle['p50_ms']:.2f} ms, loaded "
            f"{loaded['p50_ms']:.2f} ms (x{state['p50_ratio_loaded_idle']}); rps idle "
            f"{idle['requests_per_second']:.0f}, loaded {loaded['requests_per_second']:.0f}"
        )
        print(
            f"   at {idle['paced_rate']:.0f} polls/s: p50 idle {idle['paced_p50_ms']:.2f} ms, loaded "
            f"{loaded['paced_p50_ms']:.2f} ms (x{state['paced_p50_ratio_loaded_idle']}); in the same rounds, a "
            f"gateway with none of them {idle['control_paced_p50_ms']:.2f} -> {loaded['control_paced_p50_ms']:.2f} ms "
            f"(x{state['control_paced_p50_ratio_loaded_idle']}), the backend itself "
            f"{idle['backend_paced_p50_ms']:.2f} -> {loaded['backend_paced_p50_ms']:.2f} ms "
            f"(x{state['backend_paced_p50_ratio_loaded_idle']})"
        )
    routing = report.get("routing_decision_us")
    if routing:
        print("\n4. routing decision: " + ", ".join(f"{n}: {v['microseconds']} us" for n, v in routing.items()))
    large = report.get("large_result")
    if large:
        print(
            f"\n5. large result: {large['megabytes']} MB, {large['rows']} rows, {large['pages']} pages in "
            f"{large['seconds']}s ({large['megabytes_per_second']} MB/s); gateway RSS {large['rss_before_mb']} -> "
            f"peak {large['rss_peak_mb']} MB (+{large['rss_growth_mb']} MB)"
        )
    spooled = report.get("spooled_large_result")
    if spooled:
        print(
            f"   spooled: {spooled['megabytes']} MB in {spooled['spooled_segments']} segments (largest "
            f"{spooled['largest_segment_mb']} MB), {spooled['rows']} rows in {spooled['seconds']}s "
            f"({spooled['megabytes_per_second']} MB/s); gateway RSS {spooled['rss_before_mb']} -> peak "
            f"{spooled['rss_peak_mb']} MB (+{spooled['rss_growth_mb']} MB)"
        )
    if report.get("rewrite_uris_us"):
        rewrite.print_cost(report["rewrite_uris_us"])


def _scale_of_state(args: argparse.Namespace, gateway: GatewayProcess, backend: TrinoSimProcess) -> dict[str, Any]:
    """Section 3: the queries go through the benchmark's gateway (failover on, the default: it holds
    them), as in every run since the section began; beside it, a gateway on the same backend with
    failover off (it holds none), measured in the same rounds."""
    config = {"backends": [{"name": "b1", "proxy_to": backend.url}], "failover": {"enabled": False}}
    control = GatewayProcess(config=config, workers=args.gateway_workers, extra_args=["--log-level", "WARNING"])
    try:
        control.start()
        return scenarios.scale_of_state(
            (gateway.url, gateway.process.pid),
            (control.url, control.process.pid),
            backend.url,
            1000 if args.quick else 10000,
            args.seconds,
            2 if args.quick else 5,
        )
    finally:
        control.stop()


if __name__ == "__main__":
    main()
