"""What the whole suite (tests/ and chaos/) shares: running on several pytest-xdist workers at once.

``make test`` and ``make check`` run the suite on several workers (``-n``): most of a test's time is
spent waiting (on sockets, polls, a backend's sleep), and every test starts its own servers on free
loopback ports. A test marked ``alone`` runs with no other test beside it: the workers of one run
take turns through two lock files (``fcntl.flock``), every other test holding a shared lock for its
whole run (setup, call, teardown), an ``alone`` test the exclusive one. The ``alone`` tests are
those that saturate both cores by themselves (three gateway nodes of two workers each behind
haproxy, a burst of 300 clients), whose guarantees would otherwise be measured on a machine busier
than the one they describe. Without xdist (``pytest`` alone, ``-n 0``) nothing is locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from trinosim.gateway_process import remove_stopped_directories

_TURNS = pytest.StashKey["_Turns"]()
_RUN = pytest.StashKey[str]()


class _Turns:
    """A readers-writer lock shared by the workers of one run; a writer waiting at the gate keeps new
    readers out, so an ``alone`` test waits only for the tests already running."""

    def __init__(self, run_id: str) -> None:
        base = Path(tempfile.gettempdir()) / f"trino-ha-gateway-tests-{run_id}"
        self.gate, self.room = base.with_suffix(".gate"), base.with_suffix(".room")

    @contextlib.contextmanager
    def hold(self, alone: bool) -> Iterator[None]:
        with self.gate.open("a") as gate, self.room.open("a") as room:
            fcntl.flock(gate, fcntl.LOCK_EX)
            if alone:
                fcntl.flock(room, fcntl.LOCK_EX)  # the gate stays shut until this test is over
            else:
                fcntl.flock(room, fcntl.LOCK_SH)
                fcntl.flock(gate, fcntl.LOCK_UN)
            yield  # closing the files lets both locks go

    def remove(self) -> None:
        self.gate.unlink(missing_ok=True)
        self.room.unlink(missing_ok=True)


def pytest_sessionfinish(session: pytest.Session) -> None:
    remove_stopped_directories()


def pytest_configure(config: pytest.Config) -> None:
    worker = getattr(config, "workerinput", None)
    if worker is not None:
        config.stash[_TURNS] = _Turns(worker["testrunuid"])
    elif getattr(config.option, "dist", "no") != "no":
        # The controller names the run (xdist hands the name to every worker) to remove its lock files at the end.
        config.option.testrunuid = config.option.testrunuid or uuid.uuid4().hex
        config.stash[_RUN] = config.option.testrunuid


def pytest_unconfigure(config: pytest.Config) -> None:
    run_id = config.stash.get(_RUN, None)
    if run_id is not None:
        _Turns(run_id).remove()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[object]:
    """Outside pytest-timeout's timer: waiting for a turn is not the test's time."""
    turns = item.config.stash.get(_TURNS, None)
    if turns is None:
        return (yield)
    with turns.hold(alone=item.get_closest_marker("alone") is not None):
        return (yield)
