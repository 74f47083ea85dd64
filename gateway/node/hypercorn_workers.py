"""hypercorn's worker processes under the node's graceful stop (``server.engine: hypercorn``).

In place of ``hypercorn.run.run``, whose main process stops its workers the moment a signal comes
(no grace to give) and, once the first worker has exited, sends SIGTERM to the others, which
kills them mid-drain (they install no handler for it). Here the workers are hypercorn's own
(``asyncio_worker``/``uvloop_worker``, as hypercorn starts them), on sockets bound once in this
process; they stop when ``stop`` is set, each answering its requests in flight for at most
hypercorn's ``graceful_timeout`` and then running the lifespan shutdown.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import time
from multiprocessing.connection import wait

from hypercorn.config import Config

from gateway.node.shutdown import GracefulStop

log = logging.getLogger("gateway.hypercorn")


def serve(hyper: Config, workers: int, graceful: GracefulStop, timeout: float) -> int:
    """Run ``workers`` processes until ``graceful`` stops them; those still running ``timeout``
    seconds after that are killed. 0 once stopped as asked, 1 if a worker ended on its own."""
    from hypercorn.asyncio.run import asyncio_worker, uvloop_worker

    worker = uvloop_worker if hyper.worker_class == "uvloop" else asyncio_worker
    sockets = hyper.create_sockets()
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    # The workers inherit SIGINT ignored (as under hypercorn.run): a terminal's Ctrl-C reaches the
    # whole process group, and how the node stops is this process's decision.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        processes = [
            context.Process(
                target=worker,
                kwargs={"config": hyper, "sockets": sockets, "shutdown_event": stop},
                name=f"trino-gateway worker-{index + 1}",
            )
            for index in range(workers)
        ]
        for process in processes:
            process.start()
    finally:
        signal.signal(signal.SIGINT, previous)
    graceful.install(stop.set)
    crashed = False
    while not graceful.stopping.is_set():
        # A short timeout: a signal handler runs while we wait, but (PEP 475) does not end the wait.
        if wait([process.sentinel for process in processes], timeout=0.2):
            crashed = not graceful.stopping.is_set()
            if crashed:
                log.error("a worker exited unexpectedly: stopping the others")
            stop.set()
            break
    deadline = time.monotonic() + timeout
    for process in processes:
        process.join(max(deadline - time.monotonic(), 0))
    for process in processes:
        if process.is_alive():
            log.warning(
                "killing %s: still busy %g s after the shutdown began (server.shutdown_timeout)", process.name, timeout
            )
            process.kill()
            process.join()
    for sock in [*sockets.secure_sockets, *sockets.insecure_sockets]:
        sock.close()
    return 1 if crashed else 0
