"""``trino-gateway backend list|activate|deactivate|drain``: the operator's command line, over the
admin API of a running gateway.

    trino-gateway backend drain trino-1 --wait --timeout 600   # deactivate, then wait until drained

Exit status: 0 done (for ``drain --wait``: drained, safe to stop), 1 not drained within ``--timeout``,
2 the gateway could not be asked or refused the request.

With the gateway's ``auth`` on, credentials come from the environment, never the command line
(where ``ps`` shows them): ``TRINO_GATEWAY_USER`` and ``TRINO_GATEWAY_PASSWORD`` (Basic), or
``TRINO_GATEWAY_TOKEN`` (a bearer JWT). ``--ca-file`` names the CA of an HTTPS gateway.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, TextIO

import httpx

DEFAULT_SERVER = "http://localhost:8080"


class CommandError(Exception):
    """The gateway could not be asked, or said no; the message says which."""


def add_parser(commands: Any) -> None:
    backend = commands.add_parser(
        "backend", help="list, activate, deactivate, drain, start or stop backends of a running gateway"
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--server", default=DEFAULT_SERVER, help=f"the gateway's address (default {DEFAULT_SERVER})")
    common.add_argument("--ca-file", help="CA of an https:// gateway's certificate (default: the system's)")
    actions = backend.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="every backend: group, active, health, what it still runs", parents=[common])
    for action, text in (
        ("activate", "new queries may go to the backend again"),
        ("deactivate", "no new queries go to the backend; what runs there finishes"),
        ("start", "start the cluster through its scaler (docs/scaling.md)"),
        ("stop", "drain the cluster, then stop it through its scaler once drained"),
    ):
        actions.add_parser(action, help=text, parents=[common]).add_argument("name")
    drain = actions.add_parser(
        "drain", help="deactivate the backend and show (or wait for) its drain", parents=[common]
    )
    drain.add_argument("name")
    drain.add_argument("--wait", action="store_true", help="wait until it is drained: safe to stop")
    drain.add_argument("--timeout", type=float, default=3600.0, help="seconds --wait waits at most (default 3600)")
    drain.add_argument("--interval", type=float, default=1.0, help="seconds between looks (default 1)")


def _credentials(environ: dict[str, str]) -> tuple[dict[str, str], httpx.BasicAuth | None]:
    """Headers and Basic auth for the calls, from the environment."""
    token = environ.get("TRINO_GATEWAY_TOKEN")
    if token:
        return {"Authorization": f"Bearer {token}"}, None
    user = environ.get("TRINO_GATEWAY_USER")
    if user:
        return {}, httpx.BasicAuth(user, environ.get("TRINO_GATEWAY_PASSWORD", ""))
    return {}, None


class _Gateway:
    def __init__(self, server: str, ca_file: str | None = None, environ: dict[str, str] | None = None) -> None:
        self.server = server.rstrip("/")
        headers, auth = _credentials(dict(os.environ) if environ is None else environ)
        verify: Any = ca_file if ca_file else True
        self.client = httpx.Client(
            base_url=self.server, timeout=30.0, trust_env=False, headers=headers, auth=auth, verify=verify
        )

    def call(self, method: str, path: str) -> Any:
        try:
            answer = self.client.request(method, path)
        except httpx.HTTPError as error:
            raise CommandError(f"cannot reach the gateway at {self.server}: {error}") from None
        try:
            body = answer.json()
        except ValueError:
            body = answer.text
        if answer.status_code >= 400:
            reason = body.get("error") if isinstance(body, dict) else body
            if answer.status_code == 401:
                reason = f"{reason} (set TRINO_GATEWAY_USER and TRINO_GATEWAY_PASSWORD, or TRINO_GATEWAY_TOKEN)"
            raise CommandError(f"{method} {path} answered HTTP {answer.status_code}: {reason}")
        return body


def _work(status: dict[str, Any]) -> str:
    parts = []
    for count_key, age_key, noun in (
        ("unfinishedQueries", "oldestQueryAgeSeconds", "query"),
        ("openTransactions", "oldestTransactionAgeSeconds", "transaction"),
    ):
        count = status.get(count_key) or 0
        if count:
            plural = "queries" if noun == "query" and count != 1 else f"{noun}s" if count != 1 else noun
            parts.append(f"{count} {plural} (oldest {status.get(age_key)} s)")
    return ", ".join(parts) or "nothing running"


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    gateway = _Gateway(args.server, args.ca_file)
    try:
        if args.action == "list":
            _list(gateway, out)
        elif args.action in ("activate", "deactivate"):
            backend = gateway.call("POST", f"/gateway/backend/{args.action}/{args.name}")
            print(f"{backend['name']}: {'active' if backend['active'] else 'inactive'}", file=out)
        elif args.action in ("start", "stop"):
            backend = gateway.call("POST", f"/gateway/backend/{args.name}/{args.action}")
            print(f"{backend['name']}: {backend.get('state')}", file=out)
        else:
            return _drain(gateway, args, out)
    except CommandError as error:
        print(f"trino-gateway: {error}", file=sys.stderr)
        return 2
    return 0


def _list(gateway: _Gateway, out: TextIO) -> None:
    rows = [("NAME", "GROUP", "ACTIVE", "STATE", "HEALTH", "STILL RUNNING", "DRAINED")]
    for backend in gateway.call("GET", "/gateway/health"):
        rows.append(
            (
                backend["name"],
                backend["routingGroup"],
                "yes" if backend["active"] else "no",
                backend.get("clusterState") or "",
                backend["state"],
                _work(backend),
                "yes" if backend.get("drained") else "no",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(), file=out)


def _drain(gateway: _Gateway, args: argparse.Namespace, out: TextIO) -> int:
    name = args.name
    gateway.call("POST", f"/gateway/backend/deactivate/{name}")
    print(f"{name}: deactivated: no new queries go there", file=out, flush=True)
    deadline = time.monotonic() + args.timeout
    said: tuple[int, int] | None = None
    said_at = 0.0
    while True:
        status = gateway.call("GET", f"/gateway/backend/{name}/drain")
        if status["drained"]:
            print(f"{name}: drained: safe to stop", file=out, flush=True)
            return 0
        work = _work(status)
        if not args.wait:
            print(f"{name}: draining: {work}", file=out, flush=True)
            return 0
        # A line when what is left changes, and every 30 s so that a long drain shows it is alive.
        left = (status["unfinishedQueries"], status["openTransactions"])
        if left != said or time.monotonic() - said_at >= 30:
            print(f"{name}: draining: {work}", file=out, flush=True)
            said, said_at = left, time.monotonic()
        if status["active"]:
            print(f"trino-gateway: {name} was activated again while draining", file=sys.stderr)
            return 1
        if time.monotonic() >= deadline:
            print(f"trino-gateway: {name} is not drained after {args.timeout:g} s: {work}", file=sys.stderr)
            return 1
        time.sleep(min(args.interval, max(0.0, deadline - time.monotonic())))
