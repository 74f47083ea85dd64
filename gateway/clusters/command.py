"""A cluster started and stopped by shell commands (a scaler of kind ``command``).

Each command runs as ``/bin/sh -c COMMAND`` in a session (and process group) of its own, stdin from
/dev/null, stdout and stderr into one temporary file, within the scaler's ``timeout``:

- exit 0 is success; any other exit fails the action with `ScalerError`, quoting the output's end;
- at the timeout the whole process group gets SIGTERM, and SIGKILL 2 s later, and the action fails.

A start command must *return*: it issues the start and exits, it does not stay to serve. A command
that runs a server itself backgrounds it with its output redirected, e.g.
``nohup trino-launcher start >/var/log/trino.log 2>&1 &`` (or ``launcher start``, ``kubectl scale``,
``systemctl start``). The gateway waits only for ``/bin/sh``: a background child that keeps the output
file open does not hold the start up (the output goes to a file, not a pipe, for that reason, and a
child writing to it later is not killed by a broken pipe), but whatever it writes there is lost, so
redirect it. The optional ``status`` command exits 0 while the cluster is started and 1 (or any other
non-zero code but 126 and 127, the shell's "cannot run" and "not found") while it is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import tempfile
import time
from typing import IO

from gateway.clusters.errors import ScalerError
from gateway.store.backend import BackendScaler

log = logging.getLogger("gateway.clusters")

# The end of a command's output kept for its error: what went wrong is usually said last.
OUTPUT_BYTES = 64 * 1024
# Between SIGTERM and SIGKILL to a timed-out command's process group.
KILL_GRACE_SECONDS = 2.0
# The shell's own failures (the command cannot be run, or is not found): a status command that ends
# so has said nothing about the cluster.
SHELL_FAILURES = frozenset({126, 127})


class CommandScaler:
    """Runs a backend's ``start``, ``stop`` and ``status`` commands (module docstring: how)."""

    def __init__(self, spec: BackendScaler, name: str | None = None) -> None:
        if spec.kind != "command" or not spec.start or not spec.stop:
            raise ValueError("a command scaler needs a spec of kind command with start and stop")
        self.spec = spec
        self.name = name or "the cluster"
        self._start: str = spec.start
        self._stop: str = spec.stop

    async def start(self) -> None:
        await self._succeed("start", self._start)

    async def stop(self) -> None:
        await self._succeed("stop", self._stop)

    async def started(self) -> bool | None:
        """The ``status`` command's answer: exit 0 True, another exit False; None without a status
        command, or when it could not say (timed out, killed, not found)."""
        if not self.spec.status:
            return None
        try:
            code, output = await self._run("status", self.spec.status)
        except ScalerError as error:
            log.warning("%s", error)
            return None
        if code == 0:
            return True
        if code > 0 and code not in SHELL_FAILURES:
            return False
        log.warning("%s", ScalerError(f"status of {self.name} says nothing: {_describe(code)}", output))
        return None

    async def _succeed(self, action: str, command: str) -> None:
        code, output = await self._run(action, command)
        if code != 0:
            raise ScalerError(f"{action} of {self.name} failed: {_describe(code)}", output)

    async def _run(self, action: str, command: str) -> tuple[int, str]:
        """The command's exit code and the end of its output; `ScalerError` if it cannot be run or
        runs out of time (its process group is ended first)."""
        with tempfile.TemporaryFile(prefix="gateway-scaler-") as output:
            try:
                process = await asyncio.create_subprocess_exec(
                    "/bin/sh",
                    "-c",
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as error:
                raise ScalerError(f"{action} of {self.name} could not run /bin/sh: {error}") from None
            try:
                async with asyncio.timeout(self.spec.timeout):
                    code = await process.wait()
            except TimeoutError:
                await _end_group(process)
                raise ScalerError(
                    f"{action} of {self.name} timed out after {self.spec.timeout:g} s", _tail(output)
                ) from None
            except asyncio.CancelledError:
                # The caller gave up (the gateway is shutting down): nothing is left running unwatched.
                _signal_group(process.pid, signal.SIGKILL)
                raise
            return code, _tail(output)


async def _end_group(process: asyncio.subprocess.Process) -> None:
    """SIGTERM to the process group, SIGKILL to what is left of it after the grace period. The group
    outlives its leader while a child of ``sh`` (a ``sleep``, a server) is in it, so it is watched
    rather than the shell alone."""
    group = process.pid  # start_new_session: the shell leads a group of its own
    _signal_group(group, signal.SIGTERM)
    deadline = time.monotonic() + KILL_GRACE_SECONDS
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(KILL_GRACE_SECONDS):
            await process.wait()
    while time.monotonic() < deadline and _signal_group(group, 0):
        await asyncio.sleep(0.05)
    _signal_group(group, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(KILL_GRACE_SECONDS):
            await process.wait()


def _signal_group(group: int, sig: int) -> bool:
    """Send ``sig`` to the process group; False when no process is left in it."""
    try:
        os.killpg(group, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # a member changed its user (setuid): it is there, and not ours to end
    return True


def _tail(output: IO[bytes]) -> str:
    output.flush()
    size = output.seek(0, os.SEEK_END)
    output.seek(max(0, size - OUTPUT_BYTES))
    return output.read().decode(errors="replace")


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
