"""The command scaler runs real shell commands: success, failure, a hang (its whole process group
ended), a start that backgrounds a server, and a trinosim started and stopped through it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.clusters.command import OUTPUT_BYTES, CommandScaler
from gateway.clusters.docker import DockerScaler
from gateway.clusters.errors import MESSAGE_OUTPUT_CHARS
from gateway.clusters.scaler import ScalerError, scaler_for
from gateway.store.backend import BackendScaler
from trinosim.gateway_process import free_port


def command_scaler(start: str, stop: str = "true", status: str | None = None, timeout: float = 10) -> CommandScaler:
    spec = BackendScaler(kind="command", start=start, stop=stop, status=status, timeout=timeout)
    scaler = scaler_for(spec, "trino-etl")
    assert isinstance(scaler, CommandScaler)
    return scaler


def gone(pid: int) -> bool:
    """No such process, or only its zombie (whoever inherited it may be slow to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def wait_for(what: str, condition: Callable[[], Any], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


@pytest.fixture
def pids() -> Iterator[list[int]]:
    """Processes a test's commands left running on purpose: killed after it."""
    left: list[int] = []
    yield left
    for pid in left:
        if not gone(pid):
            os.kill(pid, signal.SIGKILL)


def read_pid(path: Path) -> int:
    wait_for(f"{path} written", lambda: path.exists() and path.read_text().strip(), 5)
    return int(path.read_text())


def test_scaler_for_builds_the_kind_the_record_names():
    command = BackendScaler(kind="command", start="true", stop="true")
    docker = BackendScaler(kind="docker", container="trino-etl")
    assert isinstance(scaler_for(command), CommandScaler)
    assert isinstance(scaler_for(docker), DockerScaler)


def test_without_a_status_command_the_scaler_cannot_tell():
    assert asyncio.run(command_scaler("true").started()) is None


def test_the_message_quotes_the_end_of_the_output_and_the_error_keeps_it():
    error = ScalerError("start of trino-etl failed: exit code 1", "x" * 10_000 + "the cause")
    assert str(error).startswith("start of trino-etl failed: exit code 1: ")
    assert str(error).endswith("the cause")
    assert len(str(error)) < len("start of trino-etl failed: exit code 1: ") + MESSAGE_OUTPUT_CHARS + 1
    assert error.output.endswith("the cause") and len(error.output) == 10_009


@pytest.mark.slow
def test_start_stop_and_status_commands_write_and_remove_a_pid_file(tmp_path):
    pidfile = tmp_path / "cluster.pid"
    scaler = command_scaler(start=f"echo $$ > {pidfile}", stop=f"rm {pidfile}", status=f"test -f {pidfile}")

    async def scenario() -> list[bool | None]:
        seen = [await scaler.started()]
        await scaler.start()
        seen.append(await scaler.started())
        await scaler.stop()
        seen.append(await scaler.started())
        return seen

    assert asyncio.run(scenario()) == [False, True, False]
    assert not pidfile.exists()


@pytest.mark.slow
def test_a_command_that_fails_is_an_error_with_its_exit_code_and_its_stderr():
    scaler = command_scaler(start="echo scaling up; echo 'quota exceeded for trino-etl' >&2; exit 3")
    with pytest.raises(ScalerError) as failed:
        asyncio.run(scaler.start())
    message = str(failed.value)
    assert message.startswith("start of trino-etl failed: exit code 3: ")
    assert "scaling up" in message and "quota exceeded for trino-etl" in message


@pytest.mark.slow
def test_a_stop_that_fails_is_an_error_too():
    with pytest.raises(ScalerError, match=r"^stop of trino-etl failed: exit code 1: no such cluster$"):
        asyncio.run(command_scaler(start="true", stop="echo no such cluster; false").stop())


@pytest.mark.slow
@pytest.mark.parametrize(
    "child",
    [
        pytest.param("sleep 60", id="ends-on-sigterm"),
        # A child that ignores SIGTERM is ended by the SIGKILL that follows 2 s later.
        pytest.param("sh -c \"trap '' TERM; sleep 60\"", id="ignores-sigterm"),
    ],
)
def test_a_command_that_hangs_is_ended_with_its_whole_process_group(tmp_path, pids, child):
    pidfile = tmp_path / "child.pid"
    scaler = command_scaler(start=f"echo waiting; {child} & echo $! > {pidfile}; wait", timeout=1)
    began = time.monotonic()
    with pytest.raises(ScalerError, match=r"^start of trino-etl timed out after 1 s: waiting$"):
        asyncio.run(scaler.start())
    took = time.monotonic() - began
    pid = read_pid(pidfile)
    pids.append(pid)
    # The timeout (1 s), at most the grace before SIGKILL (2 s; where nothing reaps the group's
    # orphans their zombies keep it until then), and some slack for a busy machine.
    assert took < 4.5
    wait_for(f"the command's child {pid} gone", lambda: gone(pid), 2)


@pytest.mark.slow
def test_a_command_cancelled_by_its_caller_leaves_nothing_running(tmp_path, pids):
    pidfile = tmp_path / "child.pid"
    scaler = command_scaler(start=f"sleep 60 & echo $! > {pidfile}; wait", timeout=60)

    async def give_up() -> None:
        task = asyncio.create_task(scaler.start())
        while not pidfile.exists():
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(give_up())
    pid = read_pid(pidfile)
    pids.append(pid)
    wait_for(f"the command's child {pid} gone", lambda: gone(pid), 2)


@pytest.mark.slow
@pytest.mark.parametrize(
    "redirect",
    [
        pytest.param(">/dev/null 2>&1", id="output-redirected"),
        # Not redirected, the child holds the command's output open: the start must not wait for it.
        pytest.param("", id="output-inherited"),
    ],
)
def test_a_start_that_backgrounds_a_long_lived_child_returns_promptly(tmp_path, pids, redirect):
    pidfile = tmp_path / "daemon.pid"
    scaler = command_scaler(start=f"sleep 30 {redirect} & echo $! > {pidfile}", timeout=20)
    began = time.monotonic()
    asyncio.run(scaler.start())
    took = time.monotonic() - began
    pid = read_pid(pidfile)
    pids.append(pid)
    assert took < 2
    assert not gone(pid), "the backgrounded child outlives the start"


@pytest.mark.slow
@pytest.mark.parametrize(
    "status",
    [
        pytest.param("no-such-status-command-here", id="not-found"),
        pytest.param("sleep 60", id="timed-out"),
        pytest.param("kill -9 $$", id="killed"),
    ],
)
def test_a_status_that_cannot_say_is_none(status):
    assert asyncio.run(command_scaler("true", status=status, timeout=1).started()) is None


@pytest.mark.slow
def test_the_output_kept_is_its_last_64_kb():
    # 200 KB of "a", then the line that says what went wrong.
    scaler = command_scaler(start="head -c 200000 /dev/zero | tr '\\000' a; echo; echo disk full; exit 1")
    with pytest.raises(ScalerError) as failed:
        asyncio.run(scaler.start())
    assert len(failed.value.output) == OUTPUT_BYTES
    assert failed.value.output.endswith("a\ndisk full\n")
    assert str(failed.value).endswith("disk full")
    assert len(str(failed.value)) < 600


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v1/info", timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@pytest.mark.slow
def test_a_trinosim_server_started_and_stopped_by_commands(tmp_path, pids):
    port, pidfile, log = free_port(), tmp_path / "trinosim.pid", tmp_path / "trinosim.log"
    url = f"http://127.0.0.1:{port}"
    scaler = command_scaler(
        start=f"{sys.executable} -m trinosim --name x --port {port} > {log} 2>&1 & echo $! > {pidfile}",
        # The pid file goes with the server: kill -0 alone would take its zombie for it.
        stop=f"kill $(cat {pidfile}) && rm {pidfile}",
        status=f"test -f {pidfile} && kill -0 $(cat {pidfile})",
        timeout=20,
    )
    began = time.monotonic()
    asyncio.run(scaler.start())
    assert time.monotonic() - began < 2, "start returns once issued, not once the server is ready"
    pid = read_pid(pidfile)
    pids.append(pid)
    assert asyncio.run(scaler.started()) is True
    wait_for(f"trinosim answering at {url} (log: {log})", lambda: answers(url), 60)

    asyncio.run(scaler.stop())
    wait_for(f"trinosim gone from {url}", lambda: not answers(url), 15)
    wait_for("its process gone", lambda: gone(pid), 15)
    assert asyncio.run(scaler.started()) is False
