"""Run trinosim in a child process: what tests, the demo and benchmarks use.

Each server gets a free loopback port, its own log file, and is stopped by PID.
"""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

_LISTENING = re.compile(r"listening on (https?://\S+)")


def stop_process(
    process: subprocess.Popen[bytes] | None, timeout: float = 10.0, sig: signal.Signals = signal.SIGTERM
) -> None:
    """``sig`` to the process group of ``process`` (started with ``start_new_session``, so its
    children are in it), then SIGKILL if it has not ended within ``timeout``."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        kill_process(process)


def kill_process(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None and process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


class SimAdmin:
    """trinosim's admin endpoints (``/_sim/...``) for anything that knows a trinosim's ``url``:
    the process harness here, the chaos suite's container clusters."""

    url: str
    # For a server on HTTPS with a test CA (and, for mutual TLS, a client certificate).
    admin_tls: ssl.SSLContext | None = None

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10, context=self.admin_tls) as response:
            return json.loads(response.read())

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        return self._call("PUT", "/_sim/faults", faults)

    def clear_faults(self) -> dict[str, Any]:
        return self.set_faults(
            starting_seconds=0,
            latency_ms=0,
            error_rate=0,
            hang_polls=False,
            garbage_rate=0,
            drop_rate=0,
            workers=1,
            scope="statement",
        )

    def queries(self) -> list[dict[str, Any]]:
        return self._call("GET", "/_sim/queries")

    def query(self, query_id: str) -> dict[str, Any]:
        return self._call("GET", f"/_sim/queries/{query_id}")

    def load(self, reset: bool = False) -> dict[str, int]:
        """Queries running and queued now, ``peak_running`` (the most at once; ``reset``: from now on)
        and the query counters."""
        return self._call("DELETE" if reset else "GET", "/_sim/load")

    def segments(self) -> dict[str, int]:
        """Spooled segments: how many were spooled, downloaded, acknowledged, expired, and are held now."""
        return self._call("GET", "/_sim/segments")

    def transactions(self) -> list[dict[str, Any]]:
        """Open transactions: id, age, idle time, running statements, the query ids of its statements."""
        return self._call("GET", "/_sim/transactions")


def option_flags(**options: Any) -> list[str]:
    """``python -m trinosim`` flags from keywords: ``max_running=2`` is ``--max-running 2``,
    ``True`` a bare flag, ``False``/``None`` left out."""
    args: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is not False and value is not None:
            args += [flag, str(value)]
    return args


def wait_until_ready(
    process: subprocess.Popen[bytes], url: str, what: str, log: Callable[[], str], timeout: float
) -> None:
    """Wait until ``url`` answers 200; a child that exits or never gets ready is stopped, with its log.
    An https ``url`` is asked without checking its certificate: only whether it answers counts."""
    deadline = time.monotonic() + timeout
    context = ssl._create_unverified_context() if url.startswith("https:") else None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited at start-up:\n{log()}")
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    stop_process(process)
    raise TimeoutError(f"{what} was not ready within {timeout}s:\n{log()}")


class TrinoSimProcess(SimAdmin):
    """One trinosim server in a child process.

    ``TrinoSimProcess(name="trino-1", max_running=2)`` takes any ``python -m trinosim`` option
    as a keyword (``max_running`` for ``--max-running``; ``True`` for a flag).
    """

    def __init__(self, name: str = "trinosim", host: str = "127.0.0.1", port: int = 0, **options: Any) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.options = options
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.log_path = Path(tempfile.mkstemp(prefix=f"trinosim-{name}-", suffix=".log")[1])

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "trinosim",
            *option_flags(name=self.name, host=self.host, port=self.port, **self.options),
        ]

    def start(self, timeout: float = 60.0) -> TrinoSimProcess:
        # The log is appended to across restarts: only what this start writes counts (after a stop,
        # which deletes it, there is none).
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = _LISTENING.search(self.log_path.read_bytes()[offset:].decode(errors="replace"))
            if match:
                self.url = match.group(1)
                self.port = int(self.url.rsplit(":", 1)[1])
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"trinosim {self.name} exited at start-up:\n{self.log()}")
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"trinosim {self.name} did not start within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        """Its log's end (empty once it was stopped: ``stop`` deletes the log, ``kill`` keeps it)."""
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except FileNotFoundError:
            return ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self, timeout: float = 10.0) -> None:
        stop_process(self.process, timeout)
        # Stopped on purpose: its log goes (a suite starts thousands; a killed one keeps it to read).
        self.log_path.unlink(missing_ok=True)

    def kill(self) -> None:
        kill_process(self.process)

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def __enter__(self) -> TrinoSimProcess:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
