"""The clusters a chaos scenario breaks: one interface, several kinds.

A scenario only sees ``Cluster``: it starts, stops, kills, pauses and resumes a cluster and sets
trinosim's fault knobs, whatever runs it (a child process here; containers in ``chaos.containers``).
A cluster keeps its name and port across restarts, so the gateway finds it where it was.
"""

from __future__ import annotations

from typing import Any, Protocol

from trinosim import TrinoSimProcess


class Cluster(Protocol):
    name: str

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``; the same after a restart."""
        ...

    def start(self) -> None:
        """Start, or start again after ``stop``/``kill``, under the same name and port."""
        ...

    def stop(self) -> None: ...

    def kill(self) -> None:
        """No goodbye: SIGKILL, ``docker kill``."""
        ...

    def pause(self) -> None:
        """Freeze: connections are accepted by the kernel but never answered (SIGSTOP, ``docker pause``)."""
        ...

    def resume(self) -> None: ...

    def set_faults(self, **faults: Any) -> None:
        """trinosim's ``PUT /_sim/faults`` knobs: ``error_rate``, ``garbage_rate``, ``hang_polls``, ..."""
        ...

    def queries(self) -> list[dict[str, Any]]:
        """Every query the cluster knows, as trinosim's ``/_sim/queries`` lists them."""
        ...

    def transactions(self) -> list[dict[str, Any]]:
        """The cluster's open transactions (``/_sim/transactions``)."""
        ...

    def load(self, reset: bool = False) -> dict[str, int]:
        """``/_sim/load``: queries running and queued now, ``peak_running`` (the most at once;
        ``reset``: counted from now on) and the query counters."""
        ...


class ProcessCluster:
    """A trinosim server in a child process (``trinosim.TrinoSimProcess``)."""

    def __init__(self, name: str, **options: Any) -> None:
        self.name = name
        self._sim = TrinoSimProcess(name=name, **options)
        self._paused = False

    @property
    def url(self) -> str:
        if not self._sim.port:
            raise RuntimeError(f"cluster {self.name} has not been started yet: it has no port")
        return f"http://127.0.0.1:{self._sim.port}"

    @property
    def pid(self) -> int:
        return self._sim.pid

    def start(self) -> None:
        # TrinoSimProcess keeps the port it got on the first start and binds it again.
        self._sim.start()

    def stop(self) -> None:
        self.resume()  # a stopped process cannot handle SIGTERM
        self._sim.stop()

    def kill(self) -> None:
        self._sim.kill()
        self._paused = False

    def pause(self) -> None:
        self._sim.pause()
        self._paused = True

    def resume(self) -> None:
        if self._paused:
            self._sim.resume()
            self._paused = False

    def set_faults(self, **faults: Any) -> None:
        self._sim.set_faults(**faults)

    def queries(self) -> list[dict[str, Any]]:
        return self._sim.queries()

    def transactions(self) -> list[dict[str, Any]]:
        return self._sim.transactions()

    def load(self, reset: bool = False) -> dict[str, int]:
        return self._sim.load(reset)

    def log(self) -> str:
        return self._sim.log()

    def __repr__(self) -> str:
        return f"ProcessCluster({self.name!r}, port={self._sim.port})"
