"""A TCP proxy on loopback that makes the network to one backend bad on demand.

The gateway's URL for the backend points at the proxy; the proxy forwards to the backend and
applies the faults set at the time each chunk passes:

- ``latency_ms``: every chunk is delivered that much later, in both directions (throughput is kept:
  chunks queue, they are not sent one round trip at a time);
- ``bandwidth``: bytes per second per direction and connection;
- ``reset_rate``: that fraction of new connections is reset (RST) at once; ``reset_connections()``
  resets the open ones;
- ``blackhole``: connections are accepted and everything sent is swallowed, nothing comes back.

It runs an asyncio loop in a daemon thread of the test process; ``stop()`` closes everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass, fields
from types import TracebackType
from typing import Any

_CHUNK = 65536


@dataclass
class NetworkFaults:
    latency_ms: float = 0.0
    bandwidth: float | None = None  # bytes per second, per direction and connection
    reset_rate: float = 0.0
    blackhole: bool = False


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN: SO_LINGER on with a zero timeout."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpFaultProxy:
    def __init__(self, target_url: str, port: int = 0) -> None:
        host_port = target_url.split("://", 1)[-1].rstrip("/")
        host, target_port = host_port.rsplit(":", 1)
        self.target = (host, int(target_port))
        self.port = port
        self.faults = NetworkFaults()
        self.connections_accepted = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- control, from any thread ------------------------------------------------------------
    def set_faults(self, **faults: Any) -> None:
        known = {f.name for f in fields(NetworkFaults)}
        unknown = set(faults) - known
        if unknown:
            raise ValueError(f"unknown network faults {sorted(unknown)}; known: {sorted(known)}")
        for name, value in faults.items():
            setattr(self.faults, name, value)

    def clear_faults(self) -> None:
        self.faults = NetworkFaults()

    def reset_connections(self) -> None:
        """Every open connection (both sides) is reset now."""
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(self._reset_all(), self._loop)
        future.result(10)

    def start(self, timeout: float = 10.0) -> TcpFaultProxy:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name=f"tcp-fault-proxy->{self.target[1]}", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError(f"the TCP fault proxy did not start within {timeout}s")
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        with contextlib.suppress(Exception):
            future.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = None
        self._thread = None

    # -- the loop ---------------------------------------------------------------------------
    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._reset_all()
        # Every connection's task ends here, before the loop closes under it.
        for task in self._connections:
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _reset_all(self) -> None:
        for writer in list(self._open):
            _reset(writer)
        self._open.clear()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._relay(client_reader, client_writer)
        finally:
            self._connections.discard(task)

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections_accepted += 1
        if self.faults.reset_rate and random.random() < self.faults.reset_rate:
            _reset(client_writer)
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _reset(client_writer)  # the backend refuses: so does the proxy
            return
        self._open.update((client_writer, upstream_writer))
        pumps = [
            asyncio.create_task(self._pump(client_reader, upstream_writer)),
            asyncio.create_task(self._pump(upstream_reader, client_writer)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for writer in (client_writer, upstream_writer):
                self._open.discard(writer)
                with contextlib.suppress(Exception):
                    writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One direction: read chunks as they come, deliver each after the latency, at the bandwidth."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        deliver = asyncio.create_task(self._deliver(queue, writer))
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                if self.faults.blackhole:
                    continue
                queue.put_nowait((time.monotonic() + self.faults.latency_ms / 1000, data))
            queue.put_nowait((0.0, b""))
            await deliver
        finally:
            deliver.cancel()
            await asyncio.gather(deliver, return_exceptions=True)

    async def _deliver(self, queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter) -> None:
        while True:
            due, data = await queue.get()
            if not data:
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if self.faults.blackhole:
                continue
            bandwidth = self.faults.bandwidth
            if bandwidth:
                # Paced in slices, so a capped connection trickles rather than bursts.
                step = max(1, int(bandwidth / 20))
                for offset in range(0, len(data), step):
                    writer.write(data[offset : offset + step])
                    await writer.drain()
                    await asyncio.sleep(min(step, len(data) - offset) / bandwidth)
            else:
                writer.write(data)
                await writer.drain()

    def __enter__(self) -> TcpFaultProxy:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
