"""The gateway in this process, served by hypercorn on a free loopback port, on a ``LoopThread``
beside in-process trinosim backends: the same HTTP surface as ``GatewayProcess`` (real sockets, real
clients) without a child process, and its services at hand for white-box checks."""

from __future__ import annotations

import asyncio
import copy
import gc
import logging
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig

from gateway.config import parse_config
from gateway.node.app import GatewayApp
from gateway.node.services import Services
from trinosim.gateway_process import GatewayAdmin, free_port
from trinosim.inprocess import LoopThread


class InProcessGateway(GatewayAdmin):
    def __init__(
        self,
        loop: LoopThread,
        config: dict[str, Any] | None = None,
        store: str = "memory://",
        tls: tuple[Path, Path, Path] | None = None,
    ) -> None:
        """``tls``: certificate, key and the CA that issued them; the gateway then serves HTTPS only."""
        self.loop = loop
        data = copy.deepcopy(config or {})
        data.setdefault("store", {})["url"] = store
        self.config = parse_config(data, "test config")
        self.port = free_port()
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        if tls is not None:
            self.admin_tls = ssl.create_default_context(cafile=str(tls[2]))
        self.app: GatewayApp | None = None
        self._stop: asyncio.Event | None = None
        self._served: Any = None
        self._log = _Recorder()

    @property
    def services(self) -> Services:
        assert self.app is not None and self.app.services is not None
        return self.app.services

    def log(self) -> str:
        """What the gateway logged while it ran (as ``GatewayProcess.log`` reads its log file)."""
        return "\n".join(self._log.lines)

    def start(self, timeout: float = 30.0) -> InProcessGateway:
        logging.getLogger("gateway").addHandler(self._log)
        self.app = GatewayApp(self.config)
        settings = HypercornConfig()
        settings.bind = [f"127.0.0.1:{self.port}"]
        settings.accesslog = None
        settings.graceful_timeout = 1.0
        settings.keep_alive_timeout = 75
        if self.tls is not None:
            settings.certfile, settings.keyfile = str(self.tls[0]), str(self.tls[1])

        async def run() -> None:
            self._stop = asyncio.Event()
            await serve(self.app, settings, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]

        self._served = self.loop.submit(run())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._served.done():
                self._served.result()  # raises what stopped it
                raise RuntimeError("the in-process gateway stopped at start-up")
            try:
                with urllib.request.urlopen(f"{self.url}/gateway/readyz", timeout=2, context=self.admin_tls) as answer:
                    if answer.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"the in-process gateway was not ready within {timeout}s")

    def stop(self) -> None:
        if self._served is None:
            return
        # A client's answer never read (the Trino client leaves its 401s so) keeps its connection
        # open until collected, and hypercorn's shutdown would wait 30 s on each such TLS one.
        gc.collect()
        if self._stop is not None:
            self.loop.loop.call_soon_threadsafe(self._stop.set)
        try:
            self._served.result(30)
        except TimeoutError:
            raise TimeoutError(f"the in-process gateway did not stop within 30 s; {_pending(self.loop)}") from None
        self._served = None
        logging.getLogger("gateway").removeHandler(self._log)

    def restart(self) -> InProcessGateway:
        """A new gateway on the same port and store, as after a process restart."""
        self.stop()
        return self.start()

    def __enter__(self) -> InProcessGateway:
        return self if self._served is not None else self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def _pending(loop: LoopThread) -> str:
    """What the loop is still waiting on, each task where it is stuck: a stop that hangs names why."""

    def where(awaited: Any) -> str:
        # A suspended task's own stack is one frame: follow what each coroutine awaits instead.
        places = []
        while awaited is not None and len(places) < 8:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is None:
                places.append(type(awaited).__name__)
                break
            places.append(f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno} {frame.f_code.co_name}")
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
        return " > ".join(places)

    async def stacks() -> list[str]:
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        return [f"{task.get_name()}: {where(task.get_coro())}" for task in others]

    try:
        tasks = loop.run(stacks(), timeout=5)
    except Exception as error:  # the loop itself is stuck
        return f"the loop does not answer ({error!r})"
    executor = getattr(loop.loop, "_default_executor", None)
    busy = executor._work_queue.qsize() if executor is not None else 0
    return f"{len(tasks)} tasks pending ({busy} jobs waiting for an executor thread): " + "; ".join(tasks)


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")
