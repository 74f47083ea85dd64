"""Load generation with wrk: GETs cycling over a list of poll URIs."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


@dataclass
class WrkResult:
    connections: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


def _ms(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"cannot read wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(
    base_url: str, paths: list[str], connections: int, seconds: float = 5.0, rate: float | None = None
) -> WrkResult:
    """wrk GETting ``paths`` round-robin. Without ``rate``, as fast as the target answers (closed
    loop: latency is then mostly queueing behind throughput); with ``rate`` (requests/s in all),
    each connection waits ``connections / rate`` seconds between an answer and its next request."""
    binary = shutil.which("wrk")
    if binary is None:
        raise RuntimeError("wrk is not installed: `make bench` installs the Debian package wrk")
    lines = ",\n".join(f'  "{p}"' for p in paths)
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(
        "local paths = {\n" + lines + "\n}\nlocal i = 0\n"
        'request = function()\n  i = i % #paths + 1\n  return wrk.format("GET", paths[i])\nend\n'
        + (f"delay = function()\n  return {connections * 1000.0 / rate:.3f}\nend\n" if rate else "")
    )
    try:
        finished = subprocess.run(
            [
                binary,
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--latency",
                "-s",
                str(script),
                base_url,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
        )
        if finished.returncode != 0:
            raise RuntimeError(f"wrk failed: {finished.stderr or finished.stdout}")
        output = finished.stdout
    finally:
        script.unlink(missing_ok=True)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p50 = _ms(re.search(r"\s50%\s+(\S+)", output).group(1))
    p99 = _ms(re.search(r"\s99%\s+(\S+)", output).group(1))
    errors = 0
    for pattern in (
        r"Non-2xx or 3xx responses:\s+(\d+)",
        r"Socket errors: connect (\d+), read (\d+), write (\d+), "
        r"timeout (\d+)",
    ):
        match = re.search(pattern, output)
        if match:
            errors += sum(int(g) for g in match.groups())
    return WrkResult(connections, rps, p50, p99, errors)
