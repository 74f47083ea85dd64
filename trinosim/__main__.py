"""``python -m trinosim``: start one simulated Trino coordinator."""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from trinosim.config import Faults, SimConfig
from trinosim.durations import parse_duration


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trinosim", description="A Trino-protocol server backed by DuckDB, for tests, demos and benchmarks."
    )
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--name", default="trinosim", help="cluster name, shown in logs and records")
    parser.add_argument("--environment", default="trinosim", help="environment reported by /v1/info")
    parser.add_argument("--version", default="446", help="Trino version reported by /v1/info")
    parser.add_argument("--max-running", type=int, default=100, help="queries that run at once; others queue")
    parser.add_argument("--max-queued", type=int, default=5000, help="queries that may wait in the queue")
    parser.add_argument("--page-rows", type=int, default=4096, help="rows per result page")
    parser.add_argument(
        "--query-time",
        type=_duration,
        default=0.0,
        help="time every query runs before its results appear (session property sim_run_time overrides it per query)",
    )
    parser.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM); needs --tls-key")
    parser.add_argument("--tls-key", help="the certificate's private key (PEM)")
    parser.add_argument("--tls-client-ca", help="require client certificates signed by these CAs: mutual TLS")
    parser.add_argument(
        "--spooling",
        action="store_true",
        help="serve the spooling protocol (inline and spooled segments) to clients that ask for an encoding",
    )
    parser.add_argument(
        "--spooling-ttl", type=_duration, default=300.0, help="delete spooled segments not acknowledged after this long"
    )
    parser.add_argument(
        "--transaction-idle-timeout",
        type=_duration,
        default=300.0,
        help="abort a transaction with no statement for this long (Trino's transaction.idle-timeout)",
    )
    parser.add_argument(
        "--client-timeout",
        type=_duration,
        default=300.0,
        help="abandon a query nobody polls for this long (Trino's query.client.timeout)",
    )
    parser.add_argument(
        "--forwarded",
        choices=["honour", "ignore", "reject"],
        default="honour",
        help="X-Forwarded-* headers: honour them in URIs, ignore them, or refuse such requests",
    )
    parser.add_argument(
        "--key-order",
        choices=["trino", "sorted", "next_last"],
        default="trino",
        help="members of statement pages: in Trino's order (URIs first), sorted by name, or nextUri last",
    )
    parser.add_argument("--ui-user", help="only this user may log in to /ui/login")
    parser.add_argument("--ui-password", help="password for --ui-user")
    oauth2 = parser.add_argument_group("OAuth2 external authentication (HTTPS requests only, as on Trino)")
    oauth2.add_argument("--oauth2-issuer", help="turn it on with this OpenID provider (its discovery issuer)")
    oauth2.add_argument("--oauth2-client-id", default="trinosim", help="client id at the provider")
    oauth2.add_argument("--oauth2-client-secret", default="trinosim", help="client secret at the provider")
    oauth2.add_argument("--oauth2-principal-field", default="sub", help="token claim that names the user")
    oauth2.add_argument(
        "--oauth2-no-userinfo",
        action="store_true",
        help="check access tokens as JWTs against the provider's JWKS, not at its userinfo endpoint",
    )
    oauth2.add_argument(
        "--oauth2-challenge-timeout", type=_duration, default=900.0, help="a login not finished in this long fails"
    )
    faults = parser.add_argument_group("faults (all changeable at run time: PUT /_sim/faults)")
    faults.add_argument("--starting", type=_duration, default=0.0, help="report `starting` for this long")
    faults.add_argument("--latency", type=_duration, default=0.0, help="delay added to every request")
    faults.add_argument("--error-rate", type=float, default=0.0, help="fraction of requests answered with 5xx")
    faults.add_argument("--error-status", type=int, default=503, help="status of injected errors")
    faults.add_argument("--hang-polls", action="store_true", help="never answer nextUri polls")
    faults.add_argument("--garbage-rate", type=float, default=0.0, help="fraction of requests answered with junk")
    faults.add_argument("--drop-rate", type=float, default=0.0, help="fraction of connections cut unanswered")
    faults.add_argument("--workers", type=int, default=1, help="active workers reported; 0 fails every query")
    faults.add_argument(
        "--fault-scope",
        choices=["statement", "all"],
        default="statement",
        help="requests faults apply to: the statement protocol, or every endpoint",
    )
    return parser


def config_from_args(argv: list[str] | None = None) -> SimConfig:
    args = build_parser().parse_args(argv)
    try:
        return SimConfig(
            name=args.name,
            host=args.host,
            port=args.port,
            environment=args.environment,
            version=args.version,
            max_running=args.max_running,
            max_queued=args.max_queued,
            page_rows=args.page_rows,
            default_run_time=args.query_time,
            client_timeout=args.client_timeout,
            transaction_idle_timeout=args.transaction_idle_timeout,
            spooling=args.spooling,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_client_ca=args.tls_client_ca,
            spooling_ttl=args.spooling_ttl,
            forwarded=args.forwarded,
            key_order=args.key_order,
            ui_user=args.ui_user,
            ui_password=args.ui_password,
            oauth2_issuer=args.oauth2_issuer,
            oauth2_client_id=args.oauth2_client_id,
            oauth2_client_secret=args.oauth2_client_secret,
            oauth2_principal_field=args.oauth2_principal_field,
            oauth2_userinfo=not args.oauth2_no_userinfo,
            oauth2_challenge_timeout=args.oauth2_challenge_timeout,
            faults=Faults(
                starting_seconds=args.starting,
                latency_ms=args.latency * 1000,
                error_rate=args.error_rate,
                error_status=args.error_status,
                hang_polls=args.hang_polls,
                garbage_rate=args.garbage_rate,
                drop_rate=args.drop_rate,
                workers=args.workers,
                scope=args.fault_scope,
            ),
        )
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        print(f"trinosim: invalid settings: {problems}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: list[str] | None = None) -> None:
    config = config_from_args(argv)
    try:
        from trinosim.server import run
    except ImportError as error:
        print(
            f"trinosim: {error.name or error} is missing: trinosim comes with the [sim] extra "
            "(pip install 'trino-ha-gateway[sim]')",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    run(config)


if __name__ == "__main__":
    main()
