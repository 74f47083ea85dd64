"""A gateway node's graceful shutdown: fail readiness, keep serving for a grace period, then drain.

```
SIGTERM ──▶ grace: /gateway/readyz answers 503, everything else (new connections too) is served
   │         for server.shutdown_grace seconds, so that a load balancer polling readyz takes the
   │         node out of rotation before it stops accepting
   │  (a second SIGTERM, or SIGINT at any time: no grace, or none of what is left of it)
   ▼
 drain: the engine stops accepting and answers the requests in flight (long polls included), for
        at most server.shutdown_timeout seconds; each worker's lifespan shutdown flushes the query
        history; a worker still busy after that is killed; the node exits 0
```

The process that owns the workers (granian's or our hypercorn supervisor) decides: ``GracefulStop``
takes its SIGTERM and SIGINT and hands the engine its own stop only when the grace is over.
Workers learn of the grace through ``ShutdownFlag``, a file.

Send SIGTERM to the main process only (Kubernetes and Docker do; systemd: ``KillMode=mixed``): a
worker signalled directly stops at once, as the engines make it.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

log = logging.getLogger("gateway.node.shutdown")

FLAG_ENV = "TRINO_GATEWAY_SHUTDOWN_FLAG"


class ShutdownFlag:
    """Whether this node is shutting down, as every process of the node sees it.

    A file whose path is in the environment: the workers are processes the engine starts (forked or
    spawned), and granian's HTTPS listener runs in a process of its own with workers of its own; an
    inherited path reaches them all whatever their start method, needs no engine internals (no
    worker pids, no shared memory handed through the engine), and costs one ``stat`` per
    readiness check.
    """

    def __init__(self, path: str | None) -> None:
        self.path = path

    @classmethod
    def create(cls) -> ShutdownFlag:
        """A fresh flag for a node about to start its workers (in a new directory: a flag left by an
        earlier node cannot be mistaken for this one's), published in the environment they inherit."""
        path = str(Path(tempfile.mkdtemp(prefix="trino-gateway-node-")) / "shutting-down")
        os.environ[FLAG_ENV] = path
        return cls(path)

    @classmethod
    def from_environment(cls) -> ShutdownFlag:
        """The node's flag in a worker; without one (the app run by hand under another server) it is
        never raised."""
        return cls(os.environ.get(FLAG_ENV))

    def raise_flag(self) -> None:
        if self.path is not None:
            Path(self.path).touch()

    def is_raised(self) -> bool:
        return self.path is not None and os.path.exists(self.path)

    def remove(self) -> None:
        if self.path is not None:
            shutil.rmtree(Path(self.path).parent, ignore_errors=True)


class GracefulStop:
    """SIGTERM and SIGINT in the process that owns the workers.

    The first SIGTERM raises the flag and calls ``stop`` (the engine's own graceful stop: stop
    accepting, answer what is in flight, lifespan shutdown) after ``grace`` seconds. SIGINT, or a
    SIGTERM that finds the grace running, calls it at once: Ctrl-C is a person who wants the node
    down now, and a repeated SIGTERM an operator (or orchestrator) who chose not to wait; requests
    in flight are answered either way. Later signals change nothing.
    """

    def __init__(self, flag: ShutdownFlag, grace: float, on_begin: Callable[[int], None] | None = None) -> None:
        self.flag = flag
        self.grace = grace
        # Called once with the first signal (e.g. to pass it on to the node's HTTPS process).
        self.on_begin = on_begin
        self.stopping = threading.Event()
        self._stop: Callable[[], None] | None = None
        self._began = False
        self._timer: threading.Timer | None = None
        # Taken once and never released: whoever takes it stops the engine. Not a blocking lock: a
        # signal handler may interrupt the very thread that holds it.
        self._once = threading.Lock()

    def install(self, stop: Callable[[], None]) -> None:
        """Take SIGTERM and SIGINT (from the main thread, after the engine installed its own)."""
        self._stop = stop
        signal.signal(signal.SIGTERM, self._signalled)
        signal.signal(signal.SIGINT, self._signalled)

    def _signalled(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if not self._began:
            self._began = True
            self.flag.raise_flag()
            if self.on_begin is not None:
                self.on_begin(signum)
            if signum == signal.SIGTERM and self.grace > 0:
                log.warning(
                    "%s: failing readiness, still serving for %g s (server.shutdown_grace), then draining",
                    name,
                    self.grace,
                )
                self._timer = threading.Timer(self.grace, self._stop_now)
                self._timer.daemon = True
                self._timer.start()
                return
            log.warning("%s: draining now (no grace)", name)
        elif not self.stopping.is_set():
            log.warning("%s during the grace: draining now", name)
        if self._timer is not None:
            self._timer.cancel()
        self._stop_now()

    def _stop_now(self) -> None:
        # From the signal handler or the timer's thread, whichever comes first; the engine stops once.
        if not self._once.acquire(blocking=False):
            return
        self.stopping.set()
        assert self._stop is not None, "install() first"
        self._stop()
