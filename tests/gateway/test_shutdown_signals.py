"""What SIGTERM and SIGINT do to a node (``gateway.node.shutdown``), in this process: the flag every
worker reads, the grace, and what cuts it short. The node as a whole: test_graceful_shutdown.py."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from gateway.node.shutdown import FLAG_ENV, GracefulStop, ShutdownFlag


@pytest.fixture
def flag(monkeypatch: pytest.MonkeyPatch) -> Iterator[ShutdownFlag]:
    monkeypatch.delenv(FLAG_ENV, raising=False)
    created = ShutdownFlag.create()
    yield created
    created.remove()


@pytest.fixture(autouse=True)
def own_handlers() -> Iterator[None]:
    # GracefulStop takes this process's SIGTERM and SIGINT: give pytest its own back.
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGTERM, previous[0])
    signal.signal(signal.SIGINT, previous[1])


class Engine:
    """Stands for the engine's own stop; counts how often it is asked."""

    def __init__(self) -> None:
        self.stops = 0

    def stop(self) -> None:
        self.stops += 1


def test_the_flag_reaches_processes_through_the_environment(flag):
    seen = ShutdownFlag.from_environment()
    assert seen.path == flag.path and not seen.is_raised()
    flag.raise_flag()
    assert seen.is_raised()
    flag.remove()
    assert not seen.is_raised()


def test_an_app_run_without_the_cli_has_a_flag_never_raised(monkeypatch):
    monkeypatch.delenv(FLAG_ENV, raising=False)
    flag = ShutdownFlag.from_environment()
    flag.raise_flag()
    assert not flag.is_raised()


def test_sigterm_raises_the_flag_and_keeps_the_engine_serving_through_the_grace(flag):
    engine, begun = Engine(), []
    graceful = GracefulStop(flag, grace=60, on_begin=begun.append)
    graceful.install(engine.stop)
    signal.raise_signal(signal.SIGTERM)
    assert flag.is_raised() and begun == [signal.SIGTERM]
    assert engine.stops == 0 and not graceful.stopping.is_set()
    # A second SIGTERM: the rest of the grace is skipped.
    signal.raise_signal(signal.SIGTERM)
    assert engine.stops == 1 and graceful.stopping.is_set()
    # Later signals change nothing.
    signal.raise_signal(signal.SIGINT)
    signal.raise_signal(signal.SIGTERM)
    assert engine.stops == 1 and begun == [signal.SIGTERM]


def test_the_engine_stops_once_the_grace_is_over(flag):
    engine = Engine()
    graceful = GracefulStop(flag, grace=0.1)
    graceful.install(engine.stop)
    signal.raise_signal(signal.SIGTERM)
    assert graceful.stopping.wait(10)
    assert engine.stops == 1


def test_sigint_stops_at_once_during_the_grace(flag):
    engine = Engine()
    graceful = GracefulStop(flag, grace=60)
    graceful.install(engine.stop)
    signal.raise_signal(signal.SIGTERM)
    signal.raise_signal(signal.SIGINT)
    assert engine.stops == 1


@pytest.mark.parametrize(("grace", "signum"), [(0, signal.SIGTERM), (60, signal.SIGINT)])
def test_no_grace_for_sigint_or_with_shutdown_grace_0(flag, grace, signum):
    engine = Engine()
    GracefulStop(flag, grace=grace).install(engine.stop)
    signal.raise_signal(signum)
    # Readiness fails all the same: workers draining answer no new work.
    assert flag.is_raised() and engine.stops == 1
