"""Scenario 5: the network to one cluster becomes slow; and the TCP fault proxy's own faults."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from chaos.observe import backend_health, routed_backends
from chaos.report import SUMMARY, summarise
from chaos.tcp_proxy import TcpFaultProxy
from chaos.workload import SUCCEEDED, Workload, seed_users

# 250 ms more each way and a 256 KB/s cap: a congested WAN link.
SLOW = {"latency_ms": 250, "bandwidth": 256 * 1024}


def _share(records, routed, backend, group_backends) -> float:
    mine = [routed.get(r.query_id) for r in records if routed.get(r.query_id) in group_backends]
    return mine.count(backend) / len(mine)


def test_slow_network_to_a_cluster_lowers_its_share_and_fails_no_query(kind, three_clusters, gateway_factory):
    groups = {"trino-1": "adhoc", "trino-2": "adhoc", "trino-3": "etl"}
    with TcpFaultProxy(three_clusters[0].url) as proxy:
        urls = {c.name: c.url for c in three_clusters} | {"trino-1": proxy.url}
        gateway = gateway_factory([(name, urls[name], groups[name]) for name in groups])
        with Workload(gateway.url, seed_users()) as load:
            load.wait_completed(16, where=lambda r: r.group == "adhoc")
            fault_at = load.mark("slow network")
            proxy.set_faults(**SLOW)
            # Detected when the gateway's latency figure for trino-1 shows most of the added delay.
            began = time.monotonic()
            load.wait_for(
                "the gateway to see trino-1's latency",
                lambda: backend_health(gateway)["trino-1"]["latencyMs"] >= SLOW["latency_ms"],
            )
            detect_s = time.monotonic() - began
            detected_at = load.mark("detected")
            load.wait_completed(16, where=lambda r: r.group == "adhoc" and r.submitted > detected_at, timeout=90)
    records = load.records
    routed = routed_backends(gateway)
    adhoc = {"trino-1", "trino-2"}
    before = _share([r for r in records if r.submitted < fault_at], routed, "trino-1", adhoc)
    after = _share([r for r in records if r.submitted > detected_at], routed, "trino-1", adhoc)
    notes = f"trino-1's share of adhoc queries {before:.0%} before, {after:.0%} after detection"
    SUMMARY.add(summarise("5 slow network", kind, records, detect_s=detect_s, fault_at=fault_at, notes=notes))
    assert [r for r in records if r.outcome != SUCCEEDED] == []
    assert after < before, f"trino-1's share of new queries was {before:.0%} before and {after:.0%} after"


# -- the proxy's faults, against a small echo server --------------------------------------------


def _echo_server() -> socket.socket:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(5)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError):  # the proxy resets some connections
                while data := conn.recv(65536):
                    conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    return server


def _round_trip(port: int, payload: bytes = b"ping", timeout: float = 5) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        received = b""
        while len(received) < len(payload):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def test_tcp_proxy_forwards_delays_resets_and_black_holes():
    server = _echo_server()
    try:
        with TcpFaultProxy(f"http://127.0.0.1:{server.getsockname()[1]}") as proxy:
            assert _round_trip(proxy.port) == b"ping"
            proxy.set_faults(latency_ms=200)
            began = time.monotonic()
            assert _round_trip(proxy.port) == b"ping"
            assert time.monotonic() - began >= 0.4  # 200 ms each way
            proxy.clear_faults()
            proxy.set_faults(reset_rate=1.0)
            try:
                outcome = _round_trip(proxy.port)
            except ConnectionResetError:
                outcome = b"reset"
            assert outcome in (b"reset", b"")
            proxy.clear_faults()
            proxy.set_faults(blackhole=True)
            try:
                outcome = _round_trip(proxy.port, timeout=0.5)
            except TimeoutError:
                outcome = b"timed out"
            assert outcome == b"timed out"
    finally:
        server.close()
