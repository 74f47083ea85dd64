"""trinosim servers in this process, on an event loop of their own in a background thread: the
tests' fast inner loop, where starting a child process per cluster would cost more than the test."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from aiohttp import web

from trinosim.__main__ import config_from_args
from trinosim.harness import SimAdmin, option_flags
from trinosim.server import create_app, tls_context

T = TypeVar("T")


class LoopThread:
    """An asyncio event loop running in a daemon thread; ``run`` hands it a coroutine and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        # Every server of a test session shares this loop, where each would have a process (and an
        # executor: os.cpu_count() + 4 threads) of its own; a blocking call of one must not queue
        # behind another's.
        self.loop.set_default_executor(ThreadPoolExecutor(max_workers=32, thread_name_prefix="in-process"))
        self.thread = threading.Thread(target=self.loop.run_forever, name="in-process servers", daemon=True)
        self.thread.start()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return self.submit(coroutine).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()


class InProcessSim(SimAdmin):
    """One trinosim server on ``loop``; takes the same keywords as ``TrinoSimProcess``."""

    def __init__(self, loop: LoopThread, name: str = "trinosim", port: int = 0, **options: Any) -> None:
        self.loop = loop
        self.name = name
        self.config = config_from_args(option_flags(name=name, host="127.0.0.1", port=port, **options))
        self.runner: web.AppRunner | None = None
        self.url = ""
        self.port = 0

    def start(self) -> InProcessSim:
        self.loop.run(self._start())
        return self

    async def _start(self) -> None:
        # A short shutdown: a test may leave requests hanging on purpose (the hang_polls fault).
        self.runner = web.AppRunner(
            create_app(self.config), access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self.runner.setup()
        site = web.TCPSite(
            self.runner,
            self.config.host,
            self.config.port,
            backlog=1024,
            reuse_address=True,
            ssl_context=tls_context(self.config),
        )
        await site.start()
        self.port = self.runner.addresses[0][1]
        self.url = f"{'https' if self.config.tls_cert else 'http'}://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.runner is not None:
            self.loop.run(self.runner.cleanup())
            self.runner = None

    def __enter__(self) -> InProcessSim:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
