"""One backend that hangs every request cannot starve the others of the gateway's connections."""

from __future__ import annotations

import socket
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor, wait

import pytest

from tests.conftest import connect
from tests.trinosim.helpers import wait_until
from trinosim.gateway_process import GatewayProcess

pytestmark = pytest.mark.slow

PER_BACKEND = 8


class HangingBackend:
    """Accepts connections, reads what is sent, never answers; counts the connections it holds."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self.most_held = 0
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.held.append(connection)
                self.most_held = max(self.most_held, self.open_now())

    def open_now(self) -> int:
        # A connection the gateway gave up on reads as closed (b"" or an error) from here.
        alive = 0
        for connection in self.held:
            try:
                connection.setblocking(False)
                data = connection.recv(65536, socket.MSG_PEEK)
                alive += 1 if data else 0
            except BlockingIOError:
                alive += 1
            except OSError:
                pass
        return alive

    def close(self) -> None:
        self.closed = True
        self.listener.close()
        for connection in self.held:
            connection.close()


def _submit_to(url: str, group: str) -> None:
    request = urllib.request.Request(
        f"{url}/v1/statement",
        data=b"SELECT 1",
        method="POST",
        headers={"X-Trino-User": "stuck", "X-Trino-Routing-Group": group},
    )
    try:
        with urllib.request.urlopen(request, timeout=900) as answer:
            answer.read()
    except OSError:
        pass  # the gateway or the test gave up on it: what matters is what it held meanwhile


def test_a_backend_that_hangs_every_request_leaves_200_queries_to_healthy_backends_unharmed(clusters):
    hanging = HangingBackend()
    config = {
        "proxy": {
            "max_connections": 32,
            "max_connections_per_backend": PER_BACKEND,
            "connect_timeout": 2,
            # Far beyond the test: a hung request is never released by a timeout while it runs.
            "read_timeout": 900,
        },
        "backends": [
            {"name": "trino-1", "proxy_to": clusters[0].url},
            {"name": "trino-2", "proxy_to": clusters[1].url},
            # The operator trusts another system to watch it: its health checks always pass.
            {"name": "stuck", "proxy_to": hanging.url, "routing_group": "stuck", "monitor": "NOOP"},
        ],
    }
    stuck_clients = ThreadPoolExecutor(max_workers=40)
    try:
        with GatewayProcess(store="memory://", config=config) as gateway:
            for _ in range(40):
                stuck_clients.submit(_submit_to, gateway.url, "stuck")
            wait_until(lambda: hanging.open_now() >= PER_BACKEND, what="the hanging backend to hold connections")

            def query(i: int) -> list[list[object]]:
                with connect(gateway.url, request_timeout=600) as conn:
                    cursor = conn.cursor()
                    cursor.execute(f"SELECT {i}")
                    return cursor.fetchall()

            with ThreadPoolExecutor(max_workers=200) as pool:
                futures = [pool.submit(query, i) for i in range(200)]
                # Bounded: on a gateway that lets the hung backend take every connection these wait
                # for its read timeout (900 s), far beyond this bound.
                done, pending = wait(futures, timeout=240)
                assert not pending, f"{len(pending)} of 200 queries to healthy backends did not finish"
                assert sorted(f.result() for f in done) == sorted([[i]] for i in range(200))
            # The hanging backend held its connections all along, and never more than its share.
            assert hanging.open_now() >= 1
            assert hanging.most_held <= PER_BACKEND
            hanging.close()  # its requests end now, so the gateway stops at once
    finally:
        hanging.close()
        stuck_clients.shutdown(wait=True, cancel_futures=True)
