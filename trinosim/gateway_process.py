"""Run the gateway in a child process, for tests, the demo, benchmarks and the chaos suite.

Part of the test kit, not of the product: the gateway never imports it. The port is chosen once,
so a restarted gateway comes back at the same address.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar

from trinosim.harness import kill_process, stop_process, wait_until_ready

# Each gateway's directory (its log, config and default SQLite store), and whether it was stopped on
# purpose. A stopped gateway may start again there, so its directory goes only when this process ends;
# one that crashed or did not stop in time keeps its log to read, and so does one killed and never
# stopped. (A suite starts hundreds.)
_DIRECTORIES: dict[Path, bool] = {}


@atexit.register
def remove_stopped_directories() -> None:
    """Delete the directories of the gateways stopped on purpose (also called by the test session's end:
    a pytest-xdist worker may leave without running ``atexit``)."""
    for path, stopped in list(_DIRECTORIES.items()):
        if stopped:
            shutil.rmtree(path, ignore_errors=True)
            del _DIRECTORIES[path]


class _Server(Protocol):
    def start(self) -> Any: ...
    def stop(self) -> Any: ...


ServerT = TypeVar("ServerT", bound=_Server)


@contextlib.contextmanager
def running(servers: Iterable[ServerT]) -> Iterator[None]:
    """Start each server in turn; on leaving, stop every one, also when a start failed."""
    servers = list(servers)
    try:
        for server in servers:
            server.start()
        yield
    finally:
        for server in servers:
            server.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GatewayAdmin:
    """The gateway's admin API over HTTP, for anything that knows a gateway's ``url`` (this
    process harness, the tests' in-process gateway)."""

    url: str
    # For a gateway on HTTPS only: the context its admin API is asked with.
    admin_tls: ssl.SSLContext | None = None
    # Sent with every admin call (e.g. Basic credentials once the gateway's auth is on).
    admin_headers: dict[str, str] = {}

    def call(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", **self.admin_headers},
        )
        try:
            with urllib.request.urlopen(request, timeout=15, context=self.admin_tls) as response:
                payload = response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            payload, status = error.read(), error.code
        try:
            return status, json.loads(payload)
        except ValueError:
            return status, payload.decode(errors="replace")

    def add_backend(self, name: str, url: str, group: str = "adhoc", active: bool = True) -> None:
        status, body = self.call(
            "POST",
            "/gateway/backend/modify/add",
            {"name": name, "proxyTo": url, "routingGroup": group, "active": active},
        )
        if status != 200:
            raise RuntimeError(f"adding backend {name} failed: {status} {body}")

    def deactivate(self, name: str) -> None:
        assert self.call("POST", f"/gateway/backend/deactivate/{name}")[0] == 200

    def activate(self, name: str) -> None:
        assert self.call("POST", f"/gateway/backend/activate/{name}")[0] == 200

    def queries(self, **filters: Any) -> dict[str, Any]:
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        return self.call("GET", f"/gateway/queries?{query}")[1]


class GatewayProcess(GatewayAdmin):
    """``trino-gateway serve`` in a child process on 127.0.0.1."""

    def __init__(
        self,
        store: str | None = None,
        config: dict[str, Any] | None = None,
        workers: int = 1,
        port: int | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="gateway-"))
        _DIRECTORIES[self.dir] = False
        self.store = store or f"sqlite:///{self.dir / 'gateway.db'}"
        self.config = config
        self.workers = workers
        self.port = port or free_port()
        self.extra_args = extra_args or []
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "gateway.log"
        server = (config or {}).get("server") or {}
        self.https_port: int | None = (server.get("tls") or {}).get("port")
        self.http = server.get("http", True)

    @property
    def url(self) -> str:
        """The plain HTTP address, or the HTTPS one when the gateway serves HTTPS only."""
        return f"http://127.0.0.1:{self.port}" if self.http else self.https_url

    @property
    def https_url(self) -> str:
        assert self.https_port is not None, "this gateway has no HTTPS listener"
        return f"https://127.0.0.1:{self.https_port}"

    def command(self) -> list[str]:
        args = [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--store",
            self.store,
            "--workers",
            str(self.workers),
            *self.extra_args,
        ]
        if self.config is not None:
            path = self.dir / "gateway.yaml"
            path.write_text(json.dumps(self.config))  # JSON is YAML
            args += ["--config", str(path)]
        return args

    def start(self, timeout: float = 60.0) -> GatewayProcess:
        _DIRECTORIES[self.dir] = False
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        wait_until_ready(self.process, f"{self.url}/gateway/readyz", "trino-gateway", self.log, timeout)
        if self.https_port is not None and self.http:
            wait_until_ready(self.process, f"{self.https_url}/gateway/readyz", "trino-gateway https", self.log, timeout)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""

    def stop(self, timeout: float = 15.0) -> None:
        # The whole process group: the server's worker processes included. SIGINT: the gateway stops
        # without its shutdown grace (SIGTERM would keep it serving for server.shutdown_grace).
        running = self.process is not None and self.process.poll() is None
        stop_process(self.process, timeout, signal.SIGINT)
        # Its log is kept where it has something to tell: a gateway that did not stop within
        # ``timeout`` (SIGKILLed here), or one that had ended by itself with an error.
        code = None if self.process is None else self.process.returncode
        hung = running and code == -signal.SIGKILL
        crashed = not running and code not in (None, 0, -signal.SIGKILL)
        _DIRECTORIES[self.dir] = not (hung or crashed)

    def terminate(self) -> None:
        """SIGTERM to the main process only, as an orchestrator sends it: the graceful shutdown
        (readiness fails, the grace, the drain); ``process.wait`` for its end."""
        assert self.process is not None, "not started"
        self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        kill_process(self.process)

    def restart(self) -> GatewayProcess:
        self.stop()
        return self.start()

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
