"""Fault injectors: each breaks one thing the way production breaks it, and can repair it.

Cluster faults work on any ``Cluster`` kind; network faults are in ``chaos.tcp_proxy``; gateway
and store faults act on the gateway process and its PostgreSQL store.
"""

from __future__ import annotations

import os
import signal
import threading
import time

from chaos.clusters import Cluster
from tests.postgres import PostgresServer
from trinosim.gateway_process import GatewayProcess

# -- clusters ------------------------------------------------------------------------------------


def kill(cluster: Cluster) -> None:
    cluster.kill()


def pause(cluster: Cluster) -> None:
    cluster.pause()


def resume(cluster: Cluster) -> None:
    cluster.resume()


def restart(cluster: Cluster) -> None:
    """An "upgrade": stopped, then started again under the same name and port."""
    cluster.stop()
    cluster.start()


def http_errors(cluster: Cluster, status: int = 503, everywhere: bool = True) -> None:
    """Every request answers ``status`` (with ``everywhere``, health endpoints too)."""
    cluster.set_faults(error_rate=1.0, error_status=status, scope="all" if everywhere else "statement")


def garbage(cluster: Cluster, everywhere: bool = True) -> None:
    """Every request answers 200 with a cut-off, non-JSON body."""
    cluster.set_faults(garbage_rate=1.0, scope="all" if everywhere else "statement")


def hang_polls(cluster: Cluster) -> None:
    cluster.set_faults(hang_polls=True)


def clear(cluster: Cluster) -> None:
    cluster.set_faults(
        error_rate=0, garbage_rate=0, drop_rate=0, hang_polls=False, latency_ms=0, starting_seconds=0, scope="statement"
    )


class HealthFlapping:
    """A cluster whose health endpoints fail and recover every ``period`` seconds, in a thread."""

    def __init__(self, cluster: Cluster, period: float = 0.7) -> None:
        self.cluster = cluster
        self.period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"flapping {cluster.name}", daemon=True)
        self.flips = 0

    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            failing = not failing
            self.cluster.set_faults(error_rate=1.0 if failing else 0.0, error_status=503, scope="all")
            self.flips += 1
            self._stop.wait(self.period)

    def __enter__(self) -> HealthFlapping:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        clear(self.cluster)


# -- the gateway and its store -------------------------------------------------------------------


def kill_and_restart_gateway(gateway: GatewayProcess, down_for: float = 0.0) -> float:
    """SIGKILL the gateway (all its workers), keep it down ``down_for`` seconds, start it on the
    same port; the seconds it was unreachable."""
    began = time.monotonic()
    gateway.kill()
    time.sleep(down_for)
    gateway.start()
    return time.monotonic() - began


class StoppablePostgres(PostgresServer):
    """The throwaway PostgreSQL of ``tests/postgres.py``, which can also go away and come back with
    its data, on the same port: the gateway's store made unavailable."""

    def go_down(self, timeout: float = 15.0) -> None:
        """Fast shutdown (SIGINT: clients are disconnected); the data directory stays."""
        process = self.process
        assert process is not None, "postgres is not running"
        os.kill(process.pid, signal.SIGINT)
        process.wait(timeout)
        self.process = None

    def come_back(self) -> None:
        if not self._launch():
            raise RuntimeError(f"postgres did not come back on port {self.port}:\n{self._log_tail()}")
