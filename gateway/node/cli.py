"""``trino-gateway``: the command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import multiprocessing
import os
import secrets
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from gateway.config import ConfigError, GatewayConfig, load_config, parse_config
from gateway.control import backend_command
from gateway.node.certificates import CertificateWatcher
from gateway.node.shutdown import GracefulStop, ShutdownFlag
from gateway.routing.rules import check_rules
from gateway.store import StoreError, open_store, redacted, seed_backends
from gateway.store.backend import Backend
from observability.tracing import TracingError
from observability.tracing import resolve as resolve_tracing

log = logging.getLogger("gateway.node.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trino-gateway", description="One address in front of many Trino clusters.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="YAML configuration file (optional: flags and defaults suffice)")
    serve.add_argument("--host", help="address to listen on (default 0.0.0.0)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8080)")
    serve.add_argument("--workers", type=int, help="worker processes (default 1)")
    serve.add_argument("--engine", choices=["granian", "hypercorn"], help="HTTP server (default granian)")
    serve.add_argument("--store", help="sqlite:///path/gateway.db (default) or postgresql://user:pw@host/db")
    serve.add_argument("--default-group", help="routing group for queries that name none (default adhoc)")
    serve.add_argument(
        "--backend",
        action="append",
        default=[],
        metavar="NAME=URL[@GROUP]",
        help="a backend to make sure exists, e.g. trino-1=http://127.0.0.1:8081@etl (repeatable)",
    )
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    check = commands.add_parser("check-config", help="validate a configuration file and print it resolved")
    check.add_argument("config")
    backend_command.add_parser(commands)
    return parser


def _backend_flag(text: str) -> Backend:
    name, sep, rest = text.partition("=")
    if not sep:
        raise ConfigError(f"--backend {text!r}: expected NAME=URL[@GROUP]")
    url, _, group = rest.rpartition("@") if "@" in rest.split("://", 1)[-1] else (rest, "", "")
    return parse_config(
        {"backends": [{"name": name, "proxy_to": url, "routing_group": group or "adhoc"}]}, f"--backend {text}"
    ).backends[0]


def resolve(args: argparse.Namespace) -> GatewayConfig:
    config = load_config(args.config)
    data = config.model_dump()
    if args.host is not None:
        data["server"]["host"] = args.host
    if args.port is not None:
        data["server"]["port"] = args.port
    if args.workers is not None:
        data["server"]["workers"] = args.workers
    if args.engine is not None:
        data["server"]["engine"] = args.engine
    if args.store is not None:
        data["store"]["url"] = args.store
    if args.default_group is not None:
        data["routing"]["default_group"] = args.default_group
    for flag in args.backend:
        backend = _backend_flag(flag).model_dump()
        data["backends"] = [b for b in data["backends"] if b["name"] != backend["name"]] + [backend]
    return parse_config(data, args.config or "command line")


async def prepare_store(config: GatewayConfig) -> None:
    """Bring the store's schema up to date and make the configured backends exist, once, before
    any worker starts."""
    store = await open_store(config.store.url, migrate=True)
    try:
        await seed_backends(store, config.backends)
    finally:
        await store.close()


def serve(config: GatewayConfig, log_level: str) -> int:
    try:
        resolve_tracing(config.observability.tracing)  # a bad OTEL_* variable is an error here, not in a worker
    except TracingError as error:
        raise ConfigError(str(error)) from None
    if config.store.url.startswith("memory:"):
        log.warning("store.url is memory://: API changes and the query history end with the process")
    else:
        asyncio.run(prepare_store(config))
    if config.auth is not None and config.auth.session.secret is None:
        # Every worker of this node signs UI sessions with the same key (one login serves them all).
        config.auth.session.secret = secrets.token_urlsafe(48)
    os.environ["TRINO_GATEWAY_CONFIG_JSON"] = json.dumps(config.model_dump())
    os.environ["TRINO_GATEWAY_MIGRATED"] = "1"
    metrics_dir = _metrics_dir(config.server.workers)
    # Before any worker starts: they all read the flag the shutdown raises (gateway.node.shutdown).
    flag = ShutdownFlag.create()
    try:
        return _serve(config, log_level, flag)
    finally:
        flag.remove()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _metrics_dir(workers: int) -> str | None:
    """Several workers write their metrics to one fresh directory, so that ``/metrics`` served by any
    of them sums all (prometheus-client's multiprocess mode). Set before any worker starts."""
    if workers < 2 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    path = tempfile.mkdtemp(prefix="trino-gateway-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def _serve(config: GatewayConfig, log_level: str, flag: ShutdownFlag) -> int:
    server = config.server
    listeners = []
    if server.http:
        listeners.append(f"http://{server.host}:{server.port}")
    if server.tls is not None:
        listeners.append(f"https://{server.host}:{server.tls.port}")
    print(
        f"trino-gateway listening on {' and '.join(listeners)} ({server.engine}, {server.workers} worker(s) each, "
        f"store {redacted(config.store.url)}, {len(config.backends)} configured backend(s))",
        flush=True,
    )
    if server.engine == "hypercorn":
        return _serve_hypercorn(config, log_level, GracefulStop(flag, server.shutdown_grace))
    if server.http and server.tls is not None:
        # granian serves one address per server: the HTTPS one runs in a process of its own.
        https = multiprocessing.get_context("spawn").Process(
            target=_serve_granian_alone, args=(config, log_level, flag), name="trino-gateway https", daemon=False
        )
        https.start()

        def stop_https_too(signum: int) -> None:
            # Its grace runs beside this process's, not after it.
            with contextlib.suppress(ProcessLookupError):
                os.kill(https.pid, signum)

        try:
            return _serve_granian(config, log_level, False, GracefulStop(flag, server.shutdown_grace, stop_https_too))
        finally:
            https.terminate()
            https.join(server.shutdown_grace + server.shutdown_timeout + 5)
    return _serve_granian(config, log_level, server.tls is not None, GracefulStop(flag, server.shutdown_grace))


def _serve_granian_alone(config: GatewayConfig, log_level: str, flag: ShutdownFlag) -> int:
    """The HTTPS listener's process."""
    return _serve_granian(config, log_level, True, GracefulStop(flag, config.server.shutdown_grace))


def _uvloop_available() -> bool:
    """uvloop (a faster event loop, where it builds: not on Windows) when it is installed."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _serve_granian(config: GatewayConfig, log_level: str, https: bool, graceful: GracefulStop) -> int:
    from granian import Granian
    from granian.constants import Interfaces, Loops, SSLProtocols
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    server = config.server
    tls = server.tls if https else None
    granian = Granian(
        "gateway.node.asgi:app",
        address=server.host,
        port=tls.port if tls is not None else server.port,
        interface=Interfaces.ASGI,
        workers=server.workers,
        loop=Loops.uvloop if _uvloop_available() else Loops.asyncio,
        websockets=False,
        backlog=2048,
        http1_settings=HTTP1Settings(header_read_timeout=int(server.header_read_timeout * 1000)),
        log_level=LogLevels(log_level.lower()),
        respawn_failed_workers=True,
        # The drain: on its stop, granian's workers stop accepting and answer what is in flight, then
        # run the lifespan shutdown (the history flushed); it kills those still running after this.
        workers_kill_timeout=math.ceil(server.shutdown_timeout),
        ssl_cert=Path(tls.certificate) if tls is not None else None,
        ssl_key=Path(tls.key) if tls is not None else None,
        # TLS 1.2 too: Java 8-era JDBC drivers and BI tools still need it.
        ssl_protocol_min=SSLProtocols.tls12,
    )
    if tls is not None:
        watcher = CertificateWatcher([Path(tls.certificate), Path(tls.key)], on_change=_respawn_workers)
        watcher.start()

    @granian.on_startup
    def take_the_stop_signals() -> None:
        # granian has just installed its handlers (its stop: the drain above); ours go over them
        # and call granian's once the grace is over. A public hook, no granian internals.
        engine_stop = signal.getsignal(signal.SIGTERM)
        assert callable(engine_stop), engine_stop
        graceful.install(lambda: engine_stop(signal.SIGTERM, None))

    granian.serve()
    return 0


def _respawn_workers() -> None:
    # granian's SIGHUP: its workers are respawned one by one, each reading the certificate anew.
    os.kill(os.getpid(), signal.SIGHUP)


def _serve_hypercorn(config: GatewayConfig, log_level: str, graceful: GracefulStop) -> int:
    from hypercorn.config import Config as HypercornConfig

    from gateway.node import hypercorn_workers

    server = config.server
    hyper = HypercornConfig()
    hyper.application_path = "gateway.node.asgi:app"
    if server.tls is not None:
        hyper.bind = [f"{server.host}:{server.tls.port}"]
        hyper.certfile = server.tls.certificate
        hyper.keyfile = server.tls.key
        hyper.insecure_bind = [f"{server.host}:{server.port}"] if server.http else []
    else:
        hyper.bind = [f"{server.host}:{server.port}"]
    hyper.workers = server.workers
    hyper.worker_class = "uvloop" if _uvloop_available() else "asyncio"
    hyper.accesslog = None
    hyper.errorlog = "-"
    hyper.loglevel = log_level
    hyper.keep_alive_timeout = 75
    # Each worker's drain; its lifespan shutdown (the history flushed) comes after.
    hyper.graceful_timeout = server.shutdown_timeout
    hyper.read_timeout = int(server.header_read_timeout)
    return hypercorn_workers.serve(hyper, server.workers, graceful, server.shutdown_timeout)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs every request it makes at INFO: every health check, every few seconds.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.command == "backend":
        sys.exit(backend_command.run(args))
    try:
        if args.command == "check-config":
            config = load_config(args.config)
            check_rules(config.routing_rules)
            print(json.dumps(config.model_dump(), indent=2))
            return
        config = resolve(args)
        check_rules(config.routing_rules)
        sys.exit(serve(config, args.log_level))
    except (ConfigError, StoreError) as error:
        print(f"trino-gateway: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
