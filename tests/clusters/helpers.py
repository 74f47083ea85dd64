"""trinosim clusters behind the command scaler: started and stopped by shell commands, as a
`systemctl start` or a `kubectl scale` would, each start counted in a file."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, NamedTuple

from gateway.control import backend_command
from tests.inprocess import InProcessGateway
from tests.trinosim.helpers import wait_until
from trinosim.gateway_process import free_port


class CommandCluster:
    """One trinosim process that the gateway's command scaler starts and stops (nothing runs until it does)."""

    def __init__(self, directory: Path, name: str, group: str, fail_start: bool = False, **backend: Any) -> None:
        self.name, self.group = name, group
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.pidfile = directory / f"{name}.pid"
        self.log = directory / f"{name}.log"
        self.starts = directory / f"{name}.starts"
        self.stops = directory / f"{name}.stops"
        self.fail_start = fail_start
        self.backend = backend

    def record(self) -> dict[str, Any]:
        """Its backend record, with its scaler's commands."""
        # Each start appends a line first: a test counts the starts the scaler was asked for.
        start = f"echo start >> {self.starts} && "
        if self.fail_start:
            start += "echo 'cannot start: no capacity in the zone' >&2; exit 3"
        else:
            start += (
                f"{sys.executable} -m trinosim --name {self.name} --port {self.port} > {self.log} 2>&1 & "
                f"echo $! > {self.pidfile}"
            )
        # What the cluster still ran when it was stopped goes to the stops file (the test reads it): its
        # /_sim/load, with its open transactions counted, and when (epoch seconds).
        load = (
            "import json, time, urllib.request as u; "
            f"load = json.load(u.urlopen('{self.url}/_sim/load', timeout=5)); "
            f"load['transactions'] = len(json.load(u.urlopen('{self.url}/_sim/transactions', timeout=5))); "
            "load['at'] = time.time(); print(json.dumps(load))"
        )
        stop = f'({sys.executable} -c "{load}" || echo "{{}}") >> {self.stops}; '
        stop += f"kill $(cat {self.pidfile}) && rm -f {self.pidfile}"
        return {
            "name": self.name,
            "proxy_to": self.url,
            "routing_group": self.group,
            "scaler": {"kind": "command", "start": start, "stop": stop, "timeout": 20},
            **self.backend,
        }

    def start_count(self) -> int:
        return len(self.starts.read_text().splitlines()) if self.starts.exists() else 0

    def stopped_with(self) -> list[str]:
        """What the cluster said of its load each time it was stopped (JSON lines: ``running``, ``queued``,
        ``transactions``, ``at``; ``{}`` when it did not answer)."""
        return [line for line in self.stops.read_text().splitlines() if line.strip()] if self.stops.exists() else []

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/v1/info", timeout=1):
                return True
        except OSError:
            return False

    def kill(self) -> None:
        """Whatever still runs of it, gone (the end of a test)."""
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            os.kill(int(self.pidfile.read_text().strip()), signal.SIGKILL)


def wait_for(what: str, check: Any, timeout: float, interval: float = 0.1) -> Any:
    """``check``'s first truthy value (the test kit's ``wait_until``, what is waited for named first)."""
    return wait_until(check, timeout=timeout, interval=interval, what=what)


def scaling_config(clusters: list[CommandCluster], group: str = "etl", **scaling: Any) -> dict[str, Any]:
    """A gateway whose ``group`` (the default group) scales ``clusters``: a look every 0.5 s, a health
    check every 0.5 s that flips a cluster at once."""
    return {
        "backends": [cluster.record() for cluster in clusters],
        "routing": {
            "default_group": group,
            "groups": {group: {"scaling": {"min_clusters": 0, "idle_time": "3s", "start_timeout": "60s", **scaling}}},
        },
        "scaling": {"interval": "0.5s"},
        "health": {"interval": 0.5, "timeout": 2, "success_threshold": 1, "failure_threshold": 1},
    }


def backend_list(gateway: InProcessGateway) -> dict[str, str]:
    """Each backend's STATE as `trino-gateway backend list` prints it."""
    out = io.StringIO()
    args = argparse.Namespace(action="list", server=gateway.url, ca_file=None)
    assert backend_command.run(args, out) == 0
    lines = out.getvalue().splitlines()
    header = lines[0].split()
    at = header.index("STATE")
    return {line.split()[0]: line.split()[at] for line in lines[1:]}


class Move(NamedTuple):
    """One move of a cluster's state by cluster management, as the audit trail has it."""

    before: str | None
    after: str
    why: str
    at: int  # epoch ms


# A cluster's moves from never started to stopped again, as the audit trail has them: (from, to).
A_LIFE_FROM_ZERO: list[tuple[str | None, str]] = [
    (None, "STARTING"),
    ("STARTING", "READY"),
    ("READY", "DRAINING"),
    ("DRAINING", "TERMINATING"),
    ("TERMINATING", "STOPPED"),
]


def audited_moves(gateway: InProcessGateway, backend: str) -> list[Move]:
    """Cluster management's moves of ``backend`` in the audit trail, oldest first."""
    status, answer = gateway.call("GET", "/gateway/audit?actor=cluster-manager&limit=1000")
    assert status == 200, answer
    return [
        Move((entry["before"] or {}).get("state"), entry["after"]["state"], entry["after"]["why"], entry["at"])
        for entry in reversed(answer["entries"])
        if entry["action"] == "cluster.move" and entry["target"] == backend
    ]


def moves_until_stopped(gateway: InProcessGateway, backend: str, timeout: float = 10) -> list[Move]:
    """``backend``'s moves in the audit trail, once the last is to STOPPED (a record is moved before its
    audit entry is written)."""

    def stopped() -> list[Move] | None:
        moves = audited_moves(gateway, backend)
        return moves if moves and moves[-1].after == "STOPPED" else None

    return wait_for(f"{backend}'s stop in the audit trail", stopped, timeout)


class StateWatch:
    """Every state each backend showed in `backend list`, in order, while it runs (and once more as it
    ends); and when it was first seen in each (``time.monotonic()``)."""

    def __init__(self, gateway: InProcessGateway) -> None:
        self.gateway = gateway
        self.seen: dict[str, list[str]] = {}
        self.seen_at: dict[str, list[float]] = {}
        self._stop = threading.Event()
        self._looked = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StateWatch:
        """Once it has had its first look: what the test does next is seen after the states before it."""
        self._thread.start()
        if not self._looked.wait(timeout=10):
            self._stop.set()
            raise AssertionError("`backend list` did not answer within 10 s")
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._look()  # (what the test saw last is seen here too)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._look()
            self._looked.set()
            time.sleep(0.1)

    def _look(self) -> None:
        for name, state in backend_list(self.gateway).items():
            states = self.seen.setdefault(name, [])
            if not states or states[-1] != state:
                states.append(state)
                self.seen_at.setdefault(name, []).append(time.monotonic())


def in_order(seen: list[str], expected: list[str]) -> bool:
    """Whether ``expected`` appears in ``seen`` in that order (other states may come between)."""
    remaining = iter(seen)
    return all(state in remaining for state in expected)
