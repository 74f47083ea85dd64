"""Debian's haproxy in front of gateway nodes, as a fleet is run: health checks on
``/gateway/readyz`` (a node that fails it, or is gone, gets no new requests) and retries of what can
be retried on another node (a connection that failed, and an idempotent request, such as a poll,
whose node died before it answered).

It runs as a child process with a generated configuration on a free loopback port; ``stop()`` ends
it by PID. ``make test`` installs haproxy with the other Debian packages.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from trinosim.gateway_process import free_port
from trinosim.harness import stop_process, wait_until_ready

HAPROXY = "/usr/sbin/haproxy"


def haproxy_config(port: int, servers: dict[str, int]) -> str:
    lines = [
        "global",
        "  maxconn 4096",
        "defaults",
        "  mode http",
        # Long enough for Trino's long polls (the gateway holds an idle poll up to its read timeout).
        "  timeout connect 2s",
        "  timeout client 60s",
        "  timeout server 60s",
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
        "  default-server inter 250ms fall 2 rise 2",
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
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Haproxy:
        if shutil.which(HAPROXY) is None and not Path(HAPROXY).exists():
            raise RuntimeError("haproxy is missing: `make test` installs Debian's haproxy (apt-get install haproxy)")
        self.config_path.write_text(haproxy_config(self.port, self.servers))
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
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Haproxy:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
