"""What the whole suite (tests/ and chaos/) shares: running on several pytest-xdist workers at once.

``make test`` and ``make check`` run the suite on several workers (``-n``): most of a test's time is
spent waiting (on sockets, polls, a backend's sleep), and every test starts its own servers on free
loopback ports. The tests of ``ALONE_MODULES`` run with no other test beside them: those that
saturate both cores by themselves (three gateway nodes of two workers each behind haproxy, a burst
of 300 clients) or that weigh the machine's answer times, whose guarantees would otherwise be
measured on a machine busier than the one they describe. The workers of one run take turns through
two lock files (``fcntl.flock``), every other test holding a shared lock for its whole run (setup,
call, teardown), an ``alone`` test the exclusive one.

Each wait for the exclusive lock idles the other workers until the tests they run end, so the
``alone`` tests run as one block: ``--dist loadscope`` sends them all to one worker as one scope
(``pytest_xdist_make_scheduler``), which keeps the lock from the first to the last. Without xdist
(``pytest`` alone, ``-n 0``) nothing is locked.
"""

from __future__ import annotations

import fcntl
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from xdist.scheduler import LoadScopeScheduling

from trinosim.gateway_process import remove_stopped_directories

# Modules whose tests run alone (paths from the project's root, as pytest's node ids start).
ALONE_MODULES = (
    "chaos/test_burst.py",
    "chaos/test_fleet.py",
    "chaos/test_fleet_queue.py",
    "tests/gateway/test_load_aware_routing.py",
)
_ROOT = Path(__file__).parent
# A renamed module would run beside others unnoticed.
assert all((_ROOT / module).is_file() for module in ALONE_MODULES), ALONE_MODULES

_TURNS = pytest.StashKey["_Turns"]()
_RUN = pytest.StashKey[str]()


class _Turns:
    """A readers-writer lock shared by the workers of one run; a writer waiting at the gate keeps new
    readers out, so an ``alone`` test waits only for the tests already running. An ``alone`` test
    followed by another keeps the lock for it."""

    def __init__(self, run_id: str) -> None:
        base = Path(tempfile.gettempdir()) / f"trino-ha-gateway-tests-{run_id}"
        self.gate, self.room = base.with_suffix(".gate"), base.with_suffix(".room")
        self._held: tuple[IO[str], IO[str]] | None = None

    def take(self, alone: bool) -> None:
        if self._held is not None:  # the alone test before this one kept the room for it
            return
        gate, room = self.gate.open("a"), self.room.open("a")
        fcntl.flock(gate, fcntl.LOCK_EX)
        if alone:
            fcntl.flock(room, fcntl.LOCK_EX)  # the gate stays shut until the last alone test in a row is over
        else:
            fcntl.flock(room, fcntl.LOCK_SH)
            fcntl.flock(gate, fcntl.LOCK_UN)
        self._held = (gate, room)

    def give_back(self, keep: bool) -> None:
        if keep or self._held is None:
            return
        for lock_file in self._held:
            lock_file.close()  # closing the files lets both locks go
        self._held = None

    def remove(self) -> None:
        self.gate.unlink(missing_ok=True)
        self.room.unlink(missing_ok=True)


def _alone(nodeid: str) -> bool:
    return nodeid.split("::", 1)[0] in ALONE_MODULES


class _AloneTogether(LoadScopeScheduling):
    """``--dist loadscope``, with the ``alone`` tests one scope: one worker runs them one after another."""

    def _split_scope(self, nodeid: str) -> str:
        return "alone" if _alone(nodeid) else super()._split_scope(nodeid)


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> LoadScopeScheduling | None:
    # Any other --dist keeps xdist's own scheduler.
    return _AloneTogether(config, log) if config.getoption("dist") == "loadscope" else None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _alone(item.nodeid):
            item.add_marker(pytest.mark.alone)


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
    alone = item.get_closest_marker("alone") is not None
    turns.take(alone)
    try:
        return (yield)
    finally:
        turns.give_back(keep=alone and nextitem is not None and nextitem.get_closest_marker("alone") is not None)
