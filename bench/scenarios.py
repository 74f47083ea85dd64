"""The benchmark's measurements. Each returns plain dicts, printed and saved by ``bench.__main__``."""

from __future__ import annotations

import contextlib
import os
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
import trino

from bench.wrk import run_wrk

SLOW = {"X-Trino-Session": "sim_run_time=1h"}


def with_children(pid: int) -> list[int]:
    """``pid`` and its child processes (a server's workers), from /proc."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [pid, *(int(p) for p in children.read_text().split())] if children.exists() else [pid]


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its children (the server's workers), from /proc."""
    total = 0
    for one in with_children(pid):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def prepare_polls(entry_url: str, count: int) -> list[str]:
    """``count`` queries left RUNNING, each advanced to its first executing page; the paths
    returned re-GET that page, as a client retrying a poll does (Trino answers from its cache)."""
    session = requests.Session()

    def one(i: int) -> str:
        first = session.post(
            f"{entry_url}/v1/statement",
            data=f"SELECT {i}".encode(),
            headers={"X-Trino-User": "bench", **SLOW},
            timeout=30,
        ).json()
        queued = session.get(first["nextUri"], timeout=30).json()
        executing_uri = queued["nextUri"]
        session.get(executing_uri, timeout=30)  # token 0 is now the last token: re-GETs are cached
        return "/" + executing_uri.split("/", 3)[3]

    with ThreadPoolExecutor(max_workers=32) as pool:
        return list(pool.map(one, range(count)))


def cancel_polls(entry_url: str, paths: list[str]) -> None:
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda p: requests.delete(entry_url + p, timeout=30), paths))


def poll_path(
    targets: dict[str, str],
    connections: list[int],
    seconds: float,
    queries: int,
    repeat: int = 3,
    paced: tuple[int, float] | None = (32, 2000.0),
) -> dict[str, Any]:
    """Requests/s and latency of nextUri polls, for each target (direct, nginx, gateway).

    Each cell is the median of ``repeat`` runs, taken round-robin over the targets so that a
    noisy moment of the machine does not land on one target only; min and max rps are kept.
    ``paced`` (connections, requests/s) adds a row at a fixed rate every target sustains: there
    latency is the time one request takes, not the queue behind the target's throughput.
    """
    paths = {name: prepare_polls(url, queries) for name, url in targets.items()}
    cells: list[tuple[Any, int, float | None]] = [(count, count, None) for count in connections]
    if paced is not None:
        cells.append((f"{paced[0]}@{paced[1]:.0f}/s", paced[0], paced[1]))
    runs: dict[str, dict[Any, list[Any]]] = {name: {cell: [] for cell, _, _ in cells} for name in targets}
    for _ in range(repeat):
        for cell, count, rate in cells:
            for name, url in targets.items():
                runs[name][cell].append(run_wrk(url, paths[name], count, seconds, rate))
    for name, url in targets.items():
        cancel_polls(url, paths[name])
    results: dict[str, Any] = {}
    for name in targets:
        results[name] = {}
        for count, samples in runs[name].items():
            rps = [r.requests_per_second for r in samples]
            results[name][count] = {
                "connections": samples[0].connections,
                "requests_per_second": statistics.median(rps),
                "rps_min": min(rps),
                "rps_max": max(rps),
                "p50_ms": statistics.median(r.p50_ms for r in samples),
                "p99_ms": statistics.median(r.p99_ms for r in samples),
                "errors": sum(r.errors for r in samples),
                "runs": len(samples),
            }
    return results


@contextlib.contextmanager
def pinned(on_first: set[int], on_second: set[int]) -> Iterator[None]:
    """Processes (and their children and threads) on CPU 0 and CPU 1 for the block, then on all."""
    everything = set(range(os.cpu_count() or 1))
    groups = [(pid, {0}) for pid in on_first] + [(pid, {1}) for pid in on_second]
    try:
        for pid, cpus in groups:
            _set_affinity(pid, cpus)
        yield
    finally:
        for pid, _ in groups:
            _set_affinity(pid, everything)


def _set_affinity(pid: int, cpus: set[int]) -> None:
    for one in with_children(pid):
        for thread in Path(f"/proc/{one}/task").iterdir():
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(int(thread.name), cpus)


def end_to_end(
    direct_url: str, gateway_url: str, small: int, large: int, concurrency: int, rounds: int = 5
) -> dict[str, Any]:
    """Wall time of N real-client queries, direct and through the gateway.

    ``rounds`` rounds, each running the batch direct and through the gateway (the order swapped
    every round); the medians are compared. Single batches on this shared machine differ by more
    than the 5 % the goal is about."""
    workloads = {
        "small": ("SELECT * FROM tpch.tiny.nation", small, 25),
        "multi_page": ("SELECT * FROM tpch.tiny.orders", large, 15000),
    }
    out: dict[str, Any] = {}
    for label, (sql, count, rows) in workloads.items():
        out[label] = {"queries": count, "rows_per_query": rows, "rounds": rounds}
        seconds: dict[str, list[float]] = {"direct": [], "gateway": []}
        targets = [("direct", direct_url), ("gateway", gateway_url)]
        for round_number in range(rounds):
            for target, url in targets if round_number % 2 == 0 else targets[::-1]:
                seconds[target].append(_batch(url, sql, count, rows, concurrency))
        for target, values in seconds.items():
            median = statistics.median(values)
            out[label][target] = {
                "seconds": round(median, 3),
                "queries_per_second": round(count / median, 1),
                "seconds_each_round": [round(v, 3) for v in values],
            }
        out[label]["ratio_gateway_direct"] = round(
            out[label]["gateway"]["seconds"] / out[label]["direct"]["seconds"], 3
        )
    return out


def _batch(url: str, sql: str, count: int, rows: int, concurrency: int) -> float:
    host, port = url.removeprefix("http://").split(":")

    def one(_: int) -> int:
        cursor = trino.dbapi.connect(host=host, port=int(port), user="bench").cursor()
        cursor.execute(sql)
        return len(cursor.fetchall())

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        counts = list(pool.map(one, range(count)))
    elapsed = time.perf_counter() - started
    if not all(c == rows for c in counts):
        raise RuntimeError(f"{url} returned wrong row counts: {sorted(set(counts))}")
    return elapsed


def scale_of_state(
    held: tuple[str, int],
    control: tuple[str, int],
    backend_url: str,
    in_flight: int,
    seconds: float,
    repeat: int = 5,
    rate: float = 2000.0,
) -> dict[str, Any]:
    """Gateway memory and poll latency with ``in_flight`` queries routed through ``held`` (url, pid)
    and left unfinished (read-only, no rows yet: the gateway holds them, failover being on).

    ``control`` is a second gateway on the same backend (failover off), through which nothing is sent
    while the queries are submitted; the backend is measured directly too. Each phase (idle, then
    loaded) takes ``repeat`` rounds, each round a paced run (``rate`` polls/s at 32 connections: the
    time one poll takes) on the held gateway, the control and the backend in turn, and a run as fast
    as the held gateway answers. So a change of the machine or of the backend (which holds the new
    queries too) shows in the control's and the backend's figures, and what holding costs the held
    gateway in its own beside them. Then the same number of queries goes through the control, whose
    memory growth is what a query costs a gateway that holds none (a gateway that served nothing
    before: its allocator has no freed memory to reuse, unlike the held one after the other
    sections)."""
    (held_url, held_pid), (control_url, control_pid) = held, control
    probes = {url: prepare_polls(url, 64) for url in (held_url, control_url, backend_url)}

    def measure() -> dict[str, Any]:
        paced: dict[str, list[Any]] = {url: [] for url in probes}
        flat_out = []
        for _ in range(repeat):
            for url, probe in probes.items():
                paced[url].append(run_wrk(url, probe, 32, seconds, rate))
            flat_out.append(run_wrk(held_url, probes[held_url], 32, seconds))
        return {
            "requests_per_second": statistics.median(r.requests_per_second for r in flat_out),
            "p50_ms": statistics.median(r.p50_ms for r in flat_out),
            "p99_ms": statistics.median(r.p99_ms for r in flat_out),
            "paced_rate": rate,
            "paced_p50_ms": statistics.median(r.p50_ms for r in paced[held_url]),
            "paced_p99_ms": statistics.median(r.p99_ms for r in paced[held_url]),
            "control_paced_p50_ms": statistics.median(r.p50_ms for r in paced[control_url]),
            "backend_paced_p50_ms": statistics.median(r.p50_ms for r in paced[backend_url]),
        }

    idle = measure()
    held_added, submit_seconds = _submit_and_weigh(held_url, held_pid, in_flight)
    loaded = measure()
    control_added, _ = _submit_and_weigh(control_url, control_pid, in_flight)
    for url, probe in probes.items():
        cancel_polls(url, probe)

    def ratio(key: str) -> float:
        return round(loaded[key] / idle[key], 3)

    return {
        "queries_in_flight": in_flight,
        "submit_seconds": round(submit_seconds, 2),
        "rss_added_mb": round(held_added / 2**20, 1),
        "bytes_per_query": round(held_added / in_flight),
        "control_bytes_per_query": round(control_added / in_flight),
        "idle_poll": idle,
        "loaded_poll": loaded,
        "p50_ratio_loaded_idle": ratio("p50_ms"),
        "paced_p50_ratio_loaded_idle": ratio("paced_p50_ms"),
        "control_paced_p50_ratio_loaded_idle": ratio("control_paced_p50_ms"),
        "backend_paced_p50_ratio_loaded_idle": ratio("backend_paced_p50_ms"),
    }


def _submit_and_weigh(gateway_url: str, gateway_pid: int, count: int) -> tuple[int, float]:
    """Submit ``count`` slow queries through the gateway (never polled); its RSS added, and the time."""
    before = rss_bytes(gateway_pid)
    session_local = threading.local()

    def submit(i: int) -> None:
        session = getattr(session_local, "session", None) or requests.Session()
        session_local.session = session
        response = session.post(
            f"{gateway_url}/v1/statement",
            data=f"SELECT {i}".encode(),
            headers={"X-Trino-User": "bench", **SLOW},
            timeout=60,
        )
        response.raise_for_status()

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(submit, range(count)))
    return rss_bytes(gateway_pid) - before, time.perf_counter() - started


def _generated_rules(count: int, operator: str) -> str:
    """``count`` rules of the documented shape, none of which matches the benchmark's request.

    ``==`` rules start with a header equality, which the rule set indexes; ``contains`` rules
    cannot be indexed, so every one of them runs.
    """
    return "".join(
        f'---\nname: rule-{i}\ncondition: \'request.getHeader("X-Trino-Source") {operator} "source-{i}"\'\n'
        f'actions: [\'result.put("routingGroup", "etl")\']\n'
        for i in range(count)
    )


def routing_decision(backend_counts: list[int], rule_counts: list[int], iterations: int = 20000) -> dict[str, Any]:
    """Time of one routing decision, in process: group selection by the rules, then the router."""
    from gateway.backends.health import HealthChecker
    from gateway.config import HealthConfig, RoutingConfig
    from gateway.routing.decider import RouteDecider
    from gateway.routing.rules import FileRulesSelector, parse_rules
    from gateway.store.backend import Backend

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/statement",
        "query_string": b"",
        "headers": [(b"x-trino-user", b"bench"), (b"x-trino-source", b"bench-client")],
        "client": ("127.0.0.1", 50000),
    }
    out: dict[str, Any] = {}
    for count in backend_counts:
        backends = [
            Backend(
                name=f"b{i}", proxy_to=f"http://127.0.0.1:{9000 + i}", routing_group="adhoc" if i % 2 == 0 else "etl"
            )
            for i in range(count)
        ]
        health = HealthChecker(None, None, HealthConfig(monitor="NOOP"))  # type: ignore[arg-type]
        for backend in backends:
            health.of(backend.name).succeeded(None)  # every backend HEALTHY, as in steady state
        router = RouteDecider(RoutingConfig(), health, lambda name: 0)
        for rules in rule_counts:
            for operator in ("==", "contains") if rules else ("",):
                loaded = type("LoadedRules", (), {"rules": parse_rules(_generated_rules(rules, operator))})()
                selector = FileRulesSelector(loaded, 1_000_000, "email")  # type: ignore[arg-type]
                repeat = max(50, iterations // max(1, rules // 10)) if operator != "==" else iterations
                samples = []
                for _ in range(5):
                    started = time.perf_counter()
                    for _ in range(repeat):
                        group = selector.evaluate(scope, b"SELECT 1").group if rules else "adhoc"
                        router.decide(backends, group)
                    samples.append((time.perf_counter() - started) / repeat * 1e6)
                kind = {"==": " (header ==, indexed)", "contains": " (contains, all run)"}.get(operator, "")
                out[f"{count} backends, {rules} rules{kind}"] = {
                    "backends": count,
                    "rules": rules,
                    "rule_kind": operator or None,
                    "microseconds": round(statistics.median(samples), 2),
                }
    return out


LARGE_SQL = "SELECT * FROM tpch.tiny.lineitem CROSS JOIN UNNEST(sequence(1, 25)) AS t(i)"


class PeakRss:
    """The peak RSS of a process while the block runs, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = self.peak = rss_bytes(pid)
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample)

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            time.sleep(0.05)

    def __enter__(self) -> PeakRss:
        self._sampler.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._sampler.join()

    def figures(self) -> dict[str, float]:
        return {
            "rss_before_mb": round(self.before / 2**20, 1),
            "rss_peak_mb": round(self.peak / 2**20, 1),
            "rss_growth_mb": round((self.peak - self.before) / 2**20, 1),
        }


def large_result(gateway_url: str, gateway_pid: int) -> dict[str, Any]:
    """A result of about 200 MB through the gateway: bytes moved and the gateway's memory growth."""
    session = requests.Session()
    started = time.perf_counter()
    received = rows = pages = 0
    with PeakRss(gateway_pid) as rss:
        page = session.post(
            f"{gateway_url}/v1/statement", data=LARGE_SQL.encode(), headers={"X-Trino-User": "bench"}, timeout=60
        ).json()
        while "nextUri" in page:
            response = session.get(page["nextUri"], timeout=120)
            received += len(response.content)
            page = response.json()
            rows += len(page.get("data", []))
            pages += 1
    elapsed = time.perf_counter() - started
    return {
        "rows": rows,
        "pages": pages,
        "megabytes": round(received / 2**20, 1),
        "seconds": round(elapsed, 2),
        "megabytes_per_second": round(received / 2**20 / elapsed, 1),
        **rss.figures(),
    }


def spooled_large_result(gateway_url: str, gateway_pid: int, group: str) -> dict[str, Any]:
    """The same 200 MB as spooled segments (a backend serving them itself), each downloaded through
    the gateway as a stream and acknowledged: the gateway must pass segments on, not hold them."""
    session = requests.Session()
    headers = {"X-Trino-User": "bench", "X-Trino-Routing-Group": group, "X-Trino-Query-Data-Encoding": "json"}
    started = time.perf_counter()
    segment_bytes = rows = spooled = largest = 0
    with PeakRss(gateway_pid) as rss:
        page = session.post(f"{gateway_url}/v1/statement", data=LARGE_SQL.encode(), headers=headers, timeout=60).json()
        while "nextUri" in page:
            page = session.get(page["nextUri"], timeout=120).json()
            data = page.get("data")
            for segment in data.get("segments", []) if isinstance(data, dict) else []:
                rows += segment["metadata"]["rowsCount"]
                if segment["type"] != "spooled":
                    continue
                spooled += 1
                segment_headers = {name: values[0] for name, values in segment.get("headers", {}).items()}
                size = 0
                with session.get(segment["uri"], headers=segment_headers, stream=True, timeout=120) as download:
                    download.raise_for_status()
                    for chunk in download.iter_content(1 << 20):
                        size += len(chunk)
                segment_bytes += size
                largest = max(largest, size)
                session.get(segment["ackUri"], timeout=30)
    elapsed = time.perf_counter() - started
    return {
        "rows": rows,
        "spooled_segments": spooled,
        "largest_segment_mb": round(largest / 2**20, 1),
        "megabytes": round(segment_bytes / 2**20, 1),
        "seconds": round(elapsed, 2),
        "megabytes_per_second": round(segment_bytes / 2**20 / elapsed, 1),
        **rss.figures(),
    }
