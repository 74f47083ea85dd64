"""trinosim clusters behind the command scaler: started and stopped by shell commands, as a
`systemctl start` or a `kubectl scale` would, each start counted in a file."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

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
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
