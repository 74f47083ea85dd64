"""The trinosim HTTP server: one simulated Trino coordinator."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from collections.abc import AsyncIterator

from aiohttp import web

from trinosim import faults, monitoring_api, oauth2, statement_api
from trinosim.catalog import create_database
from trinosim.config import SimConfig
from trinosim.faults import Handler
from trinosim.state import STATE, SimState

log = logging.getLogger("trinosim")
_FORWARDED = (
    "X-Forwarded-For",
    "X-Forwarded-Host",
    "X-Forwarded-Proto",
    "X-Forwarded-Port",
    "X-Forwarded-Prefix",
    "Forwarded",
)


@web.middleware
async def forwarded_policy(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Trino without ``http-server.process-forwarded`` refuses requests that carry forwarded headers."""
    state: SimState = request.app[STATE]
    if state.config.forwarded == "reject" and not request.path.startswith(faults.ADMIN_PREFIX):
        for name in _FORWARDED:
            if name in request.headers:
                return web.Response(
                    status=406,
                    content_type="text/plain",
                    text=f"Server configuration does not allow processing of the {name} header",
                )
    return await handler(request)


def tls_context(config: SimConfig) -> ssl.SSLContext | None:
    """HTTPS with ``tls_cert``; with ``tls_client_ca``, only clients with a certificate it signed."""
    if not config.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.tls_cert, config.tls_key)
    if config.tls_client_ca:
        context.load_verify_locations(config.tls_client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def create_app(config: SimConfig) -> web.Application:
    app = web.Application(middlewares=[forwarded_policy, faults.inject_faults], client_max_size=64 << 20)
    state = SimState(config, create_database())
    app[STATE] = state
    statement_api.add_routes(app)
    monitoring_api.add_routes(app)
    faults.add_routes(app)
    if config.oauth2_issuer:
        oauth2.setup(app)

    async def housekeeping(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(state.manager.reap_forever())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        state.manager.shutdown()

    app.cleanup_ctx.append(housekeeping)
    return app


async def serve(config: SimConfig, ready: asyncio.Event | None = None) -> None:
    """Serve until cancelled or sent SIGTERM/SIGINT."""
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(
        runner, config.host, config.port, reuse_address=True, backlog=1024, ssl_context=tls_context(config)
    )
    await site.start()
    port = runner.addresses[0][1] if runner.addresses else config.port
    config.port = port
    scheme = "https" if config.tls_cert else "http"
    print(f"trinosim {config.name} listening on {scheme}://{config.host}:{port}", flush=True)
    if ready is not None:
        ready.set()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def run(config: SimConfig) -> None:
    try:
        import uvloop

        uvloop.run(serve(config))
    except ImportError:
        asyncio.run(serve(config))
