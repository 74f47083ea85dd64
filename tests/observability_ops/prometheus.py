"""A real Prometheus (the Debian package's binary) in a child process, for tests."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from trinosim.gateway_process import free_port
from trinosim.harness import stop_process, wait_until_ready

BINARY_CANDIDATES = ("prometheus", "/usr/bin/prometheus")


def find_binary() -> str | None:
    for candidate in BINARY_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


class PrometheusServer:
    """``prometheus`` on 127.0.0.1 with a generated config and a throwaway storage directory."""

    def __init__(self, scrape_configs: list[dict[str, Any]], scrape_interval: str = "1s") -> None:
        binary = find_binary()
        if binary is None:
            raise RuntimeError("no prometheus binary (Debian package prometheus; make system-deps installs it)")
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="prometheus-"))
        self.port = free_port()
        self.config = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "scrape_configs": scrape_configs,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        config = self.dir / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config))
        command = [
            self.binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        wait_until_ready(self.process, f"{self.url}/-/ready", "prometheus", self.log, timeout)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        stop_process(self.process)
        shutil.rmtree(self.dir, ignore_errors=True)

    def api(self, path: str, **params: str) -> dict[str, Any]:
        """``GET /api/v1/<path>``: the JSON answer, an error answer (HTTP 400/422) included."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            return json.loads(error.read())

    def query(self, expr: str) -> dict[str, Any]:
        return self.api("query", query=expr)

    def targets_up(self) -> dict[str, bool]:
        """Scrape URL -> whether its last scrape worked."""
        active = self.api("targets")["data"]["activeTargets"]
        return {target["scrapeUrl"]: target["health"] == "up" for target in active}

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
