"""``python -m bench.auth_timing``: does the admin API's answer time tell an attacker which user names
exist? A gateway with a password file (bcrypt, cost 10, as ``htpasswd -B -C 10`` writes Trino's
password.db) is asked, interleaved so that drift hits every case alike, with a known user's wrong
password, an unknown user and the right password; the medians and the unknown/known ratio are
printed (a ratio near 1.0: no oracle) and written to ``bench/results/auth-timing-<time>.json``.
Never asserted; the test that the same bcrypt check runs for both is
``tests/gateway/test_admin_auth.py``.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path

import requests

from bench.__main__ import machine, save_report
from gateway.auth.password_file import hash_password
from trinosim.gateway_process import GatewayProcess

CASES = {
    "known user, wrong password": ("alice", "wrong"),
    "unknown user": ("nobody", "wrong"),
    "known user, right password": ("alice", "alice-pw"),
}


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200, help="requests per case")
    parser.add_argument("--cost", type=int, default=10, help="bcrypt work factor of the password file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory:
        password_file = Path(directory) / "password.db"
        password_file.write_text(f"alice:{hash_password('alice-pw', rounds=args.cost)}\n")
        auth = {
            "password_file": str(password_file),
            "roles": {"ADMIN": ["alice"]},
            # Failures are what is measured: the limiter must not answer 429 before the check runs.
            "login_limit": {"failures": 1_000_000, "address_failures": 1_000_000},
        }
        gateway = GatewayProcess(config={"auth": auth}, extra_args=["--log-level", "WARNING"]).start()
        try:
            times = measure(gateway.url, args.requests)
        finally:
            gateway.stop()

    medians = {case: statistics.median(values) for case, values in times.items()}
    ratio = medians["unknown user"] / medians["known user, wrong password"]
    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "bcrypt_cost": args.cost,
        "requests_per_case": args.requests,
        "median_ms": medians,
        "p10_ms": {case: statistics.quantiles(v, n=10)[0] for case, v in times.items()},
        "p90_ms": {case: statistics.quantiles(v, n=10)[-1] for case, v in times.items()},
        "unknown_over_known": ratio,
    }
    print(f"\nmachine: {report['machine']}")
    print(f"GET /gateway/backend/all with Basic credentials, bcrypt cost {args.cost}, {args.requests} each")
    print(f"{'case':<28} {'median ms':>10} {'p10 ms':>8} {'p90 ms':>8}")
    for case in CASES:
        print(f"{case:<28} {medians[case]:>10.2f} {report['p10_ms'][case]:>8.2f} {report['p90_ms'][case]:>8.2f}")
    print(f"unknown user / known user's wrong password: {ratio:.3f}")
    save_report("auth-timing", report)


def measure(url: str, count: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {case: [] for case in CASES}
    expected = {"known user, wrong password": 401, "unknown user": 401, "known user, right password": 200}
    with requests.Session() as session:
        for _ in range(count):
            for case, (user, password) in CASES.items():
                started = time.perf_counter()
                answer = session.get(
                    f"{url}/gateway/backend/all", headers={"Authorization": basic(user, password)}, timeout=30
                )
                times[case].append((time.perf_counter() - started) * 1000)
                if answer.status_code != expected[case]:
                    raise SystemExit(f"{case}: expected {expected[case]}, got {answer.status_code}: {answer.text}")
    return times


if __name__ == "__main__":
    main()
