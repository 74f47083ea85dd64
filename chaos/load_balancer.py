"""Debian's haproxy in front of gateway nodes, as a fleet is run: health checks on
``/gateway/readyz`` (a node that fails it, or is gone, gets no new requests) and retries of what can
be retried on another node (a connection that failed, and an idempotent request, such as a poll,
whose node died before it answered).

The checks are set as a production fleet sets them (docs/deployment.md): every second, an answer
within a second, three failures in a row to take a node out and two passes to bring it back. A
node is out of rotation at most ``TAKEN_OUT_WITHIN`` seconds after its readiness fails, which its
``server.shutdown_grace`` must cover. haproxy logs every change of a node's check state, with the
reason, and the requests that went wrong (``log()``).

It runs as a child process with a generated configuration on a free loopback port; ``stop()`` ends
it by PID. ``start()`` returns once every node passed enough checks to be fully up: haproxy starts a
node "up, but down at its first failed check" (haproxy 3.1's ``init-state up``, the only state
before it), which a long-running balancer left long ago. ``make test`` installs haproxy with the
other Debian packages.
"""

from __future__ import annotations

import csv
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from trinosim.gateway_process import free_port
from trinosim.harness import stop_process, wait_until_ready

HAPROXY = "/usr/sbin/haproxy"
# The health checks of the nodes (Kubernetes' readiness defaults for the timeout and the failures).
CHECK_EVERY, CHECK_TIMEOUT, FALL, RISE = 1.0, 1.0, 3, 2
# A node whose readiness fails gets no new requests after at most this long.
TAKEN_OUT_WITHIN = FALL * CHECK_EVERY + CHECK_TIMEOUT


def haproxy_config(port: int, servers: dict[str, int], stats_socket: Path) -> str:
    lines = [
        "global",
        "  maxconn 4096",
        # Its log on standard output (the harness's log file): what went wrong only.
        "  log stdout format raw local0 info",
        f"  stats socket {stats_socket} mode 600 level user",
        "defaults",
        "  mode http",
        "  log global",
        "  option httplog",
        "  option dontlog-normal",
        "  option log-health-checks",
        # Long enough for Trino's long polls (the gateway holds an idle poll up to its read timeout).
        "  timeout connect 2s",
        "  timeout client 60s",
        "  timeout server 60s",
        f"  timeout check {CHECK_TIMEOUT:g}s",
        # A request whose node failed goes to another: on a refused or reset connection (any
        # method: nothing reached the node), and on an empty answer or a 502/503 (idempotent
        # methods only: haproxy never resends a POST that may have reached a node).
        "  retries 3",
        "  option redispatch 1",
        "  retry-on conn-failure empty-response response-timeout 502 503",
        f"frontend gateway\n  bind 127.0.0.1:{port}\n  default_backend nodes",
        "backend nodes",
        "  balance roundrobin",
        "  option httpchk GET /gateway/readyz",
        "  http-check expect status 200",
        f"  default-server inter {CHECK_EVERY:g}s fall {FALL} rise {RISE}",
    ]
    lines += [f"  server {name} 127.0.0.1:{node_port} check" for name, node_port in servers.items()]
    return "\n".join(lines) + "\n"


class Haproxy:
    def __init__(self, servers: dict[str, int]) -> None:
        self.servers = servers
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="haproxy-"))
        self.config_path = self.dir / "haproxy.cfg"
        self.log_path = self.dir / "haproxy.log"
        self.stats_socket = self.dir / "haproxy.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Haproxy:
        if shutil.which(HAPROXY) is None and not Path(HAPROXY).exists():
            raise RuntimeError("haproxy is missing: `make test` installs Debian's haproxy (apt-get install haproxy)")
        self.config_path.write_text(haproxy_config(self.port, self.servers, self.stats_socket))
        with self.log_path.open("ab") as log:
            # -db: stay in the foreground (the harness owns the process and stops it by PID).
            self.process = subprocess.Popen(
                [HAPROXY, "-db", "-f", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        wait_until_ready(self.process, f"{self.url}/gateway/readyz", "haproxy", self.log, timeout)
        deadline = time.monotonic() + timeout
        while (states := self.server_states()) != dict.fromkeys(self.servers, "UP"):
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"haproxy's nodes not all fully up within {timeout:g} s: {states}")
            time.sleep(0.1)
        return self

    def server_states(self) -> dict[str, str]:
        """Each node's state as haproxy's statistics show it: ``UP``; ``UP 1/3`` (one more failed
        check takes it out: after a failed check, or from haproxy's start until a check passed);
        ``DOWN``; ``DOWN 1/2`` (a check passed, one more brings it back)..."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(5)
            connection.connect(str(self.stats_socket))
            connection.sendall(b"show stat\n")
            text = b"".join(iter(lambda: connection.recv(65536), b"")).decode()
        rows = csv.DictReader(text.removeprefix("# ").splitlines())
        return {row["svname"]: row["status"] for row in rows if row["pxname"] == "nodes" and row["svname"] != "BACKEND"}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""

    def taken_out(self) -> list[str]:
        """The nodes haproxy took out of rotation so far, once per time (its log's "is DOWN" lines)."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return re.findall(r"^Server nodes/(\S+) is DOWN", text, re.MULTILINE)

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Haproxy:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
