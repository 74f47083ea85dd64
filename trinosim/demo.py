"""``make demo`` (``python -m trinosim.demo``): the gateway, on an embedded SQLite store, in front of
three local trinosim clusters, until Ctrl-C.

trino-1 and trino-2 form routing group ``adhoc`` (the default), trino-3 is group ``etl``. The
gateway checks them with the ``UI_API`` monitor, which reads each cluster's running and queued
queries and its workers (``/ui/api/stats``), so the UI's overview shows them and the score router
weighs them; the default ``INFO_API`` monitor only tells whether a cluster is up.
``--clusters-only`` starts just the three clusters.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import threading
from pathlib import Path

from trinosim.gateway_process import GatewayProcess, free_port
from trinosim.harness import TrinoSimProcess

GROUPS = ("adhoc", "adhoc", "etl")
DEMO_MONITOR = "UI_API"
# The demo's routing rules (editable in the UI's Routing rules page; kept across demo runs).
DEMO_RULES = """---
name: airflow
description: "queries from Airflow go to the etl group"
priority: 1
condition: 'request.getHeader("X-Trino-Source") == "airflow"'
actions:
  - 'result.put("routingGroup", "etl")'
"""


def _port(preferred: int) -> int:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            return free_port()
    return preferred


def _wait_for_ctrl_c() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()


def _connect_help(url: str, port: int) -> str:
    return f"""
Query it with the Python client:
  .venv/bin/python -c "import trino; c = trino.dbapi.connect(host='127.0.0.1', port={port}, user='demo').cursor(); c.execute('SELECT name FROM tpch.tiny.region'); print(c.fetchall())"
"""  # noqa: E501


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the trino-gateway demo until Ctrl-C.")
    parser.add_argument("--port", type=int, default=8080, help="gateway port (a free one if taken)")
    parser.add_argument("--state-dir", default=".demo", help="where the SQLite store and logs go")
    parser.add_argument("--clusters-only", action="store_true", help="start the three clusters, not the gateway")
    args = parser.parse_args()
    state = Path(args.state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    clusters = [TrinoSimProcess(name=f"trino-{i}", port=_port(8080 + i)) for i in (1, 2, 3)]
    gateway = None
    try:
        for cluster in clusters:
            cluster.start()
        if args.clusters_only:
            print("\nClusters up:")
            for cluster in clusters:
                print(f"  {cluster.name}: {cluster.url}   (log: {cluster.log_path})")
            print(_connect_help(clusters[0].url, clusters[0].port) + "\nCtrl-C stops them.", flush=True)
            _wait_for_ctrl_c()
            return
        rules = state / "rules.yaml"
        if not rules.exists():
            rules.write_text(DEMO_RULES)
        config = {
            "server": {"host": "127.0.0.1"},
            "backends": [
                {"name": c.name, "proxy_to": c.url, "routing_group": g} for c, g in zip(clusters, GROUPS, strict=True)
            ],
            "routing_rules": {"enabled": True, "type": "FILE", "rules_file": str(rules)},
            # The result cache, for the adhoc group's queries whose client asks for it (client tag cache).
            "routing": {"groups": {"adhoc": {"cache": {"ttl": "1m", "opt_in": True}}}},
            # A check that reads the clusters' load (trinosim serves Trino's /ui/api/stats).
            "health": {"monitor": DEMO_MONITOR},
        }
        gateway = GatewayProcess(
            store=f"sqlite:///{state / 'gateway.db'}", config=config, port=_port(args.port)
        ).start()
        url = gateway.url
        print(
            f"""
trino-gateway is running at {url}  (store: {state / "gateway.db"}, log: {gateway.log_path})

Web UI: {url}/   (auth is off in the demo: anyone who reaches the port is ADMIN)

  routing group adhoc (default): trino-1 {clusters[0].url}, trino-2 {clusters[1].url}
  routing group etl:             trino-3 {clusters[2].url}
  result cache: group adhoc, for a minute, for queries tagged cache (Python: client_tags=['cache'];
  CLI: --client-tags=cache); the overview shows its hit ratio, docs/cache.md says the rest
  health checks: {DEMO_MONITOR} every 5 s (each cluster's running and queued queries and workers: the
  overview shows them, the score router weighs them)
{_connect_help(url, gateway.port)}
the same, routed to the etl group by the X-Trino-Routing-Group header (or by the rule in {rules}
for source airflow):
  .venv/bin/python -c "import trino; c = trino.dbapi.connect(host='127.0.0.1', port={gateway.port}, user='demo', http_headers={{'X-Trino-Routing-Group': 'etl'}}).cursor(); c.execute('SELECT count(*) FROM tpch.tiny.lineitem'); print(c.fetchall())"

or the Trino CLI:
  java -jar $(.venv/bin/python -c 'import trinocli, os; print(os.path.dirname(trinocli.__file__))')/bin/trino-cli.jar --server {url} --catalog tpch --schema tiny

Admin API:
  curl {url}/gateway/backend/all
  curl -X POST {url}/gateway/backend/deactivate/trino-1
  curl '{url}/gateway/queries?limit=5'
  curl {url}/gateway/health

Metrics (Prometheus) and the same numbers as JMX-style MBeans:
  curl {url}/metrics
  curl {url}/v1/jmx/mbean

Ctrl-C stops everything.""",  # noqa: E501
            flush=True,
        )
        _wait_for_ctrl_c()
    finally:
        if gateway is not None:
            gateway.stop()
        for cluster in clusters:
            cluster.stop()


if __name__ == "__main__":
    main()
